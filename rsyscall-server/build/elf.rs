//! A minimal ELF64 (little-endian, x86-64) reader, enough to check the helper binaries:
//! the file type, the program header types, and the defined functions in `.dynsym`.
//!
//! Every read is bounds-checked; a malformed file gives an `Err` naming what was wrong.
//!
//! One copy, used by two builds: `rsyscall-server`'s build script (checking the helper
//! binaries it embeds) and `cargo xtask build-server` (checking what it installs), each of
//! which includes this file with `#[path]`. It depends on `std` alone for that reason.

use std::collections::BTreeSet;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_TLS: u32 = 7;

const SHT_DYNSYM: u32 = 11;
const SHN_UNDEF: u16 = 0;
const STB_LOCAL: u8 = 0;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

/// A parsed ELF64 file: the header fields this module needs, over the file's bytes.
pub struct Elf<'a> {
    data: &'a [u8],
    file_type: u16,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    shoff: usize,
    shentsize: usize,
    shnum: usize,
}

/// One section header (the fields used here).
struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: usize,
    entsize: usize,
}

fn bytes<'a>(data: &'a [u8], at: usize, len: usize, what: &str) -> Result<&'a [u8], String> {
    at.checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or_else(|| format!("truncated ELF file: {what} at offset {at} is out of bounds"))
}

fn u16_at(data: &[u8], at: usize, what: &str) -> Result<u16, String> {
    let b = bytes(data, at, 2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: usize, what: &str) -> Result<u32, String> {
    let b = bytes(data, at, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(data: &[u8], at: usize, what: &str) -> Result<u64, String> {
    let b = bytes(data, at, 8, what)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Ok(u64::from_le_bytes(w))
}

fn usize_at(data: &[u8], at: usize, what: &str) -> Result<usize, String> {
    usize::try_from(u64_at(data, at, what)?).map_err(|_| format!("{what} does not fit in usize"))
}

/// `base + index * size`, or an error if it overflows.
fn table_offset(base: usize, index: usize, size: usize, what: &str) -> Result<usize, String> {
    index
        .checked_mul(size)
        .and_then(|o| o.checked_add(base))
        .ok_or_else(|| format!("{what} offset overflows"))
}

impl<'a> Elf<'a> {
    /// Parses the ELF header; fails unless this is a little-endian ELF64 x86-64 file.
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, String> {
        let ident = bytes(data, 0, 16, "e_ident")?;
        if &ident[..4] != b"\x7fELF" {
            return Err("not an ELF file (bad magic)".into());
        }
        if ident[4] != 2 || ident[5] != 1 {
            return Err("not a little-endian ELF64 file".into());
        }
        let machine = u16_at(data, 18, "e_machine")?;
        if machine != EM_X86_64 {
            return Err(format!("not an x86-64 file (e_machine {machine})"));
        }
        Ok(Elf {
            data,
            file_type: u16_at(data, 16, "e_type")?,
            phoff: usize_at(data, 32, "e_phoff")?,
            shoff: usize_at(data, 40, "e_shoff")?,
            phentsize: usize::from(u16_at(data, 54, "e_phentsize")?),
            phnum: usize::from(u16_at(data, 56, "e_phnum")?),
            shentsize: usize::from(u16_at(data, 58, "e_shentsize")?),
            shnum: usize::from(u16_at(data, 60, "e_shnum")?),
        })
    }

    /// The `p_type` of every program header, in order.
    fn program_header_types(&self) -> Result<Vec<u32>, String> {
        (0..self.phnum)
            .map(|i| {
                let at = table_offset(self.phoff, i, self.phentsize, "program header")?;
                u32_at(self.data, at, "p_type")
            })
            .collect()
    }

    fn sections(&self) -> Result<Vec<Section>, String> {
        (0..self.shnum)
            .map(|i| {
                let at = table_offset(self.shoff, i, self.shentsize, "section header")?;
                Ok(Section {
                    kind: u32_at(self.data, at + 4, "sh_type")?,
                    offset: usize_at(self.data, at + 24, "sh_offset")?,
                    size: usize_at(self.data, at + 32, "sh_size")?,
                    link: u32_at(self.data, at + 40, "sh_link")? as usize,
                    entsize: usize_at(self.data, at + 56, "sh_entsize")?,
                })
            })
            .collect()
    }

    /// The names of the defined, non-local function symbols of `.dynsym`: what the file
    /// exports to the dynamic linker.
    pub fn exported_functions(&self) -> Result<BTreeSet<String>, String> {
        let sections = self.sections()?;
        let Some(dynsym) = sections.iter().find(|s| s.kind == SHT_DYNSYM) else {
            return Ok(BTreeSet::new());
        };
        let strtab = sections
            .get(dynsym.link)
            .ok_or("the .dynsym string table index is out of range")?;
        let strings = bytes(self.data, strtab.offset, strtab.size, ".dynstr")?;
        if dynsym.entsize < 24 {
            return Err(format!("bad .dynsym entry size {}", dynsym.entsize));
        }
        let mut names = BTreeSet::new();
        for i in 0..dynsym.size / dynsym.entsize {
            let sym = bytes(
                self.data,
                table_offset(dynsym.offset, i, dynsym.entsize, ".dynsym entry")?,
                24,
                ".dynsym entry",
            )?;
            let name_off = u32_at(sym, 0, "st_name")? as usize;
            let info = sym[4];
            let shndx = u16_at(sym, 6, "st_shndx")?;
            let (bind, kind) = (info >> 4, info & 0xf);
            if shndx == SHN_UNDEF || bind == STB_LOCAL || !matches!(kind, STT_FUNC | STT_GNU_IFUNC)
            {
                continue;
            }
            let name = strings
                .get(name_off..)
                .and_then(|s| s.split(|&b| b == 0).next())
                .ok_or_else(|| format!("symbol name offset {name_off} is out of .dynstr"))?;
            names.insert(String::from_utf8_lossy(name).into_owned());
        }
        Ok(names)
    }

    /// The names of the program header types, among INTERP, DYNAMIC and TLS, present.
    fn forbidden_segments(
        &self,
        forbidden: &[(u32, &'static str)],
    ) -> Result<Vec<&'static str>, String> {
        let types = self.program_header_types()?;
        Ok(forbidden
            .iter()
            .filter(|(t, _)| types.contains(t))
            .map(|&(_, name)| name)
            .collect())
    }
}

fn type_name(file_type: u16) -> String {
    match file_type {
        1 => "REL".into(),
        ET_EXEC => "EXEC".into(),
        ET_DYN => "DYN".into(),
        4 => "CORE".into(),
        n => format!("{n}"),
    }
}

/// Checks that `data` is a static, libc-free-style executable: ELF type EXEC (not PIE) with
/// no `PT_INTERP`, no `PT_DYNAMIC` and no `PT_TLS` program header.
pub fn check_static_executable(data: &[u8]) -> Result<(), String> {
    let elf = Elf::parse(data)?;
    let mut problems = Vec::new();
    if elf.file_type != ET_EXEC {
        problems.push(format!(
            "ELF type is {} instead of EXEC",
            type_name(elf.file_type)
        ));
    }
    let found = elf.forbidden_segments(&[
        (PT_INTERP, "INTERP"),
        (PT_DYNAMIC, "DYNAMIC"),
        (PT_TLS, "TLS"),
    ])?;
    for name in found {
        problems.push(format!("it has a PT_{name} program header"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Checks that `data` is a shared object (type DYN, no `PT_INTERP`, no `PT_TLS`) whose
/// exported functions are exactly `expected`.
pub fn check_shared_library(data: &[u8], expected: &[&str]) -> Result<(), String> {
    let elf = Elf::parse(data)?;
    let mut problems = Vec::new();
    if elf.file_type != ET_DYN {
        problems.push(format!(
            "ELF type is {} instead of DYN",
            type_name(elf.file_type)
        ));
    }
    for name in elf.forbidden_segments(&[(PT_INTERP, "INTERP"), (PT_TLS, "TLS")])? {
        problems.push(format!("it has a PT_{name} program header"));
    }
    let exported = elf.exported_functions()?;
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let missing: Vec<&String> = expected.difference(&exported).collect();
    let extra: Vec<&String> = exported.difference(&expected).collect();
    if !missing.is_empty() {
        problems.push(format!("it does not export {missing:?}"));
    }
    if !extra.is_empty() {
        problems.push(format!("it also exports {extra:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare ELF64 header: x86-64, the given type, no program or section headers.
    fn header(file_type: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[6] = 1;
        h[16..18].copy_from_slice(&file_type.to_le_bytes());
        h[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        h[52..54].copy_from_slice(&64u16.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[58..60].copy_from_slice(&64u16.to_le_bytes());
        h
    }

    /// `header` plus one program header of type `p_type`.
    fn with_segment(file_type: u16, p_type: u32) -> Vec<u8> {
        let mut h = header(file_type);
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[56..58].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&p_type.to_le_bytes());
        h.extend_from_slice(&ph);
        h
    }

    #[test]
    fn accepts_a_bare_exec() {
        assert_eq!(check_static_executable(&header(ET_EXEC)), Ok(()));
        assert_eq!(check_static_executable(&with_segment(ET_EXEC, 1)), Ok(()));
    }

    #[test]
    fn rejects_pie_interp_dynamic_and_tls() {
        let e = check_static_executable(&header(ET_DYN)).unwrap_err();
        assert!(e.contains("DYN instead of EXEC"), "{e}");
        for (t, name) in [
            (PT_INTERP, "INTERP"),
            (PT_DYNAMIC, "DYNAMIC"),
            (PT_TLS, "TLS"),
        ] {
            let e = check_static_executable(&with_segment(ET_EXEC, t)).unwrap_err();
            assert!(e.contains(&format!("PT_{name}")), "{e}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(check_static_executable(b"#!/bin/sh\n").is_err());
        assert!(check_static_executable(&header(ET_EXEC)[..40]).is_err());
        let mut truncated = with_segment(ET_EXEC, 1);
        truncated.truncate(66);
        assert!(check_static_executable(&truncated).is_err());
    }

    #[test]
    fn the_test_binary_itself_is_not_static() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(check_static_executable(&exe).is_err());
        // It is a PIE with a dynamic symbol table but exports no such five functions.
        let e = check_shared_library(&exe, &["rsyscall_server"]).unwrap_err();
        assert!(e.contains("does not export"), "{e}");
    }
}
