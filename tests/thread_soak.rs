//! Soak: thousands of clone+exec+wait cycles leave no fd, mapping or child behind.
