//! Socket activation: a listening socket made here is handed to a real program on fd 3,
//! with `LISTEN_FDS=1` and `LISTEN_PID` set as systemd does, and a request is served
//! through it.
//!
//! The parent makes a TCP socket listening on `127.0.0.1` (port 0: the kernel picks one,
//! read back with `getsockname`), clones a child, puts the child's copy of the socket on
//! its fd 3 (open across exec), and execs a program with `LISTEN_FDS=1` and `LISTEN_PID`
//! set to the child's pid, which it asks the child itself: by the convention
//! (sd_listen_fds(3)) a program uses the fds only if `LISTEN_PID` is its own pid, and
//! exec keeps the pid, so it must be the child's. The program is this example's own
//! binary run again with the argument `serve` (a separate program that knows nothing of
//! rsyscall: the kind of small server a socket-activated daemon is); it checks the
//! variables, accepts one connection on fd 3 and answers one HTTP request. The parent,
//! which never accepts, connects, sends the request, prints the answer and waits for the
//! server to exit.
//!
//! Run with `cargo run --example fd_passing`. It leaves nothing behind: the server exits
//! after one request and is waited for.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::FromRawFd;
use std::process::ExitCode;

use rsyscall::near::FileDescriptor;
use rsyscall::structs::{AnySockaddr, SockaddrIn};
use rsyscall::{AF, CLONE, Command, Error, O, SOCK, SockType, local_thread};

/// The first fd of socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

fn main() -> ExitCode {
    env_logger::init();
    let result = if std::env::args().nth(1).as_deref() == Some("serve") {
        serve().map_err(|e| format!("server: {e}"))
    } else {
        async_io::block_on(activate()).map_err(|e| e.to_string())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fd_passing: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The parent: makes the socket, starts the server with it, and is its client.
async fn activate() -> Result<(), Error> {
    let local = local_thread();
    let listener = local
        .socket(AF::INET, SockType::STREAM, SOCK::empty())
        .await?;
    let port = match local
        .bind_getsockname(&listener, &SockaddrIn::new(Ipv4Addr::LOCALHOST, 0))
        .await?
    {
        AnySockaddr::In(addr) => addr.port(),
        other => return Err(Error::invalid("getsockname", format!("{other:?}"))),
    };
    listener.listen(16).await?;
    println!("1. listening on 127.0.0.1:{port}");

    let child = local.clone(CLONE::empty()).await?;
    let theirs = child.inherit_fd(&listener)?;
    // The child's table is a copy of ours. Close every copy it has no use for (fd 3 may be
    // one), those open across exec included, so the server gets only its stdio and the
    // socket; then put the socket at fd 3, open across exec. `dup_at` never replaces an
    // open fd, so no unsafe claim about what fd 3 held is needed.
    child.mark_cloexec_except(&[&theirs]).await?;
    child.do_cloexec_except(&[&theirs]).await?;
    let fd_3 = FileDescriptor::new(LISTEN_FDS_START);
    let on_fd_3 = if theirs.near() == fd_3 {
        // Already there (the listener is our fd 3 too when nothing else is open).
        theirs.disable_cloexec().await?;
        theirs
    } else {
        theirs.dup_at(fd_3, O::empty()).await?
    };
    // The child's pid as it sees it (the same as ours for it here, but not if it were in
    // another pid namespace), which its program will compare with its own.
    let pid = child.task().getpid().await?;
    let program = std::env::current_exe().map_err(|source| Error::Io {
        what: "finding this example's binary",
        source,
    })?;
    let command = Command::new(program, "fd_passing")
        .arg("serve")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", pid.to_string());
    println!(
        "2. child {pid} has the socket on fd 3; exec'ing the server with LISTEN_FDS=1 LISTEN_PID={pid}"
    );
    let server = child.exec(command).await?;
    // The exec'd server owns its fd 3 now; the handle names a table we no longer drive.
    drop(on_fd_3);
    // The server holds the socket now; our copy is not needed.
    drop(listener);

    // A client of our own: connect, send a request, read the answer to EOF.
    let sock = local
        .socket(AF::INET, SockType::STREAM, SOCK::NONBLOCK)
        .await?;
    let conn = local.make_afd(sock, false).await?;
    conn.connect(&SockaddrIn::new(Ipv4Addr::LOCALHOST, port))
        .await?;
    conn.write_all_bytes(b"GET /hello HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    loop {
        let chunk = conn.read_some_bytes(4096).await?;
        if chunk.is_empty() {
            break;
        }
        answer.extend_from_slice(&chunk);
    }
    conn.close().await?;
    println!("3. the answer:");
    for line in String::from_utf8_lossy(&answer).lines() {
        println!("   | {line}");
    }
    let state = server.wait().await?;
    println!("4. the server {state}");
    server.check().await
}

/// The server: a program started by socket activation. Checks `LISTEN_PID` and
/// `LISTEN_FDS`, accepts one connection on fd 3, reads one HTTP request and answers it.
fn serve() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).map_err(|e| format!("${name}: {e}"));
    let (listen_pid, listen_fds) = (var("LISTEN_PID")?, var("LISTEN_FDS")?);
    if listen_pid != std::process::id().to_string() {
        return Err(format!(
            "LISTEN_PID is {listen_pid}, not our pid {}: the fds are not for us",
            std::process::id()
        ));
    }
    if listen_fds != "1" {
        return Err(format!("LISTEN_FDS is {listen_fds}; one socket expected"));
    }
    // SAFETY: by the socket activation convention just checked (LISTEN_PID is ours,
    // LISTEN_FDS=1), fd 3 was handed to this process to own, and nothing else in this
    // program uses it: it is taken once, here.
    let listener = unsafe { TcpListener::from_raw_fd(LISTEN_FDS_START) };
    let addr = listener
        .local_addr()
        .map_err(|e| format!("fd 3 is not a TCP socket: {e}"))?;
    let (stream, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader
        .read_line(&mut request)
        .map_err(|e| format!("reading the request: {e}"))?;
    // The headers, up to the empty line.
    let mut line = String::new();
    while reader
        .read_line(&mut line)
        .map_err(|e| format!("reading the headers: {e}"))?
        > 2
    {
        line.clear();
    }
    let body = format!(
        "pid {} (LISTEN_PID={listen_pid}) served {:?} on fd 3, listening on {addr}, from {peer}\n",
        std::process::id(),
        request.trim_end()
    );
    let mut stream = &stream;
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("answering: {e}"))
}
