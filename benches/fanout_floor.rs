//! `cargo bench --bench fanout_floor -- [--subscribers N] [--rounds R] [--every MS] [--bytes B]`:
//! the least time a change's fan-out can take on this machine, whatever the hub does.
//!
//! A hub sends each change to every subscriber: one write to each of N TCP sockets. Here nothing
//! else happens. This process writes one B-byte frame to each of N loopback sockets, R rounds
//! `--every` MS apart, from one thread on its first allowed core. A second process (this program
//! again, on another core) holds the N sockets' other ends, reads them all with one `epoll`
//! loop, and times each frame from the moment its round began (the frames carry it, read from
//! the monotonic clock both processes share). What it reports — the time of one write, of a
//! round's pass over every socket, and a frame's arrival p50 / p99 — is a floor: a hub's own
//! figures under the same load are these plus its own work (framing, its tasks, the presence it
//! checks), with the load tool's reading in place of this one.
//!
//! Loopback runs the receiver's side of TCP on the sender's core, so a write here costs what a
//! hub's `send(2)` costs its core when its subscribers are on the same machine.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;

/// Set in the reading process's environment: the writer's port, and the core to run on.
const READER: &str = "GOOP_FANOUT_FLOOR_READER";
const READER_CORE: &str = "GOOP_FANOUT_FLOOR_CORE";

#[derive(Debug, Clone, Parser)]
#[command(name = "cargo bench --bench fanout_floor --")]
struct Arguments {
    /// Sockets written to in each round (1–100,000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    subscribers: usize,
    /// Rounds: one frame to every socket each (1–10,000).
    #[arg(long, default_value_t = 30, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    rounds: usize,
    /// Milliseconds from one round's start to the next's (0–60,000). 300 is about the rate of
    /// changes of a community of 10,000 whose peers change their label once an hour.
    #[arg(long, default_value_t = 300, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(0..=60_000))]
    every: u64,
    /// Bytes in a frame (16–65,536). 300 is about a change as the hub sends it to a peer of
    /// the load tool's community: a signed presence message with a label, an address, a client
    /// version and a time.
    #[arg(long, default_value_t = 300, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..=65_536))]
    bytes: usize,
}

impl Arguments {
    fn to_args(&self) -> Vec<String> {
        vec![
            "--subscribers".into(),
            self.subscribers.to_string(),
            "--rounds".into(),
            self.rounds.to_string(),
            "--every".into(),
            self.every.to_string(),
            "--bytes".into(),
            self.bytes.to_string(),
        ]
    }
}

fn main() -> anyhow::Result<()> {
    if let Ok(port) = std::env::var(READER) {
        let port = port.parse().context("the reader's port")?;
        let arguments = Arguments::parse_from(std::env::args());
        return read(port, &arguments);
    }
    let arguments = common::arguments(Arguments {
        subscribers: 200,
        rounds: 3,
        every: 50,
        bytes: 300,
    });
    write(&arguments)
}

/// The monotonic clock in nanoseconds: the same clock in both processes.
fn now_ns() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("the monotonic clock is readable");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// Lets this process open `sockets` more descriptors, raising its soft limit up to the hard one.
fn allow_sockets(sockets: usize) -> anyhow::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let wanted = sockets as u64 + 64;
    if soft < wanted {
        ensure!(
            hard >= wanted,
            "{sockets} sockets need {wanted} file descriptors; this process may have {hard} \
             (its hard limit: see `ulimit -Hn`)"
        );
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard)?;
    }
    Ok(())
}

/// The cores this process may run on.
fn allowed_cores() -> anyhow::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&core| set.is_set(core).unwrap_or(false))
        .collect())
}

fn pin(core: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(core)?;
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// The writing side: starts the reader, accepts its sockets, writes the rounds, reports.
fn write(arguments: &Arguments) -> anyhow::Result<()> {
    allow_sockets(arguments.subscribers)?;
    let cores = allowed_cores()?;
    let (mine, theirs) = match cores.as_slice() {
        [] => bail!("this process may run on no core"),
        [only] => {
            eprintln!("one core allowed: the writer and the reader share core {only}");
            (*only, *only)
        }
        [first, .., last] => (*first, *last),
    };
    pin(mine)?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    let mut reader = Command::new(std::env::current_exe()?)
        .args(arguments.to_args())
        .env(READER, port.to_string())
        .env(READER_CORE, theirs.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the reading process")?;
    // Accepted without blocking, so that a reader that fails to connect ends the run.
    listener.set_nonblocking(true)?;
    let connecting = Instant::now() + Duration::from_secs(60);
    let mut sockets = Vec::with_capacity(arguments.subscribers);
    while sockets.len() < arguments.subscribers {
        match listener.accept() {
            Ok((socket, _)) => {
                socket.set_nonblocking(false)?;
                socket.set_nodelay(true)?;
                sockets.push(socket);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = reader.try_wait()? {
                    bail!("the reading process ended before it connected: {status}");
                }
                ensure!(
                    Instant::now() < connecting,
                    "only {} of {} sockets connected in 60 s",
                    sockets.len(),
                    arguments.subscribers
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(error.into()),
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    let mut frame = vec![b'x'; arguments.bytes];
    let mut passes = Vec::with_capacity(arguments.rounds);
    let started = Instant::now();
    for round in 0..arguments.rounds {
        let due = started + Duration::from_millis(arguments.every * round as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let begun = Instant::now();
        frame[..8].copy_from_slice(&now_ns().to_le_bytes());
        for socket in &mut sockets {
            socket.write_all(&frame)?;
        }
        passes.push(begun.elapsed());
    }
    let mut report = String::new();
    reader
        .stdout
        .take()
        .context("the reader's output")?
        .read_to_string(&mut report)?;
    let status = reader.wait()?;
    ensure!(status.success(), "the reading process failed: {status}");

    passes.sort();
    let n = arguments.subscribers;
    let mean = passes.iter().sum::<Duration>() / passes.len() as u32;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{n} loopback sockets, {} rounds {} ms apart, a {}-byte frame to each; writer on core \
         {mine}, reader on core {theirs}",
        arguments.rounds, arguments.every, arguments.bytes
    );
    println!(
        "one write:              {:.2} µs (mean)",
        mean.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "a round's pass:         {:.1} ms (median), {:.1} ms (slowest)",
        ms(passes[passes.len() / 2]),
        ms(passes[passes.len() - 1])
    );
    print!("{report}");
    Ok(())
}

/// The reading side: connects `subscribers` sockets to the writer on `port`, reads every
/// round's frame on each, and prints the frames' arrival times.
fn read(port: u16, arguments: &Arguments) -> anyhow::Result<()> {
    allow_sockets(arguments.subscribers)?;
    if let Ok(core) = std::env::var(READER_CORE) {
        pin(core.parse()?)?;
    }
    let epoll = Epoll::new(EpollCreateFlags::empty())?;
    let mut sockets = Vec::with_capacity(arguments.subscribers);
    for index in 0..arguments.subscribers {
        let socket = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        socket.set_nonblocking(true)?;
        epoll.add(
            socket.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, index as u64),
        )?;
        sockets.push((socket, Vec::with_capacity(arguments.bytes)));
    }
    let expected = arguments.subscribers * arguments.rounds;
    let mut arrivals = Vec::with_capacity(expected);
    let mut events = vec![EpollEvent::empty(); 512];
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = Instant::now()
        + Duration::from_millis(arguments.every * arguments.rounds as u64)
        + Duration::from_secs(60);
    while arrivals.len() < expected {
        ensure!(
            Instant::now() < deadline,
            "only {} of {expected} frames arrived",
            arrivals.len()
        );
        let count = epoll.wait(&mut events, 1000u16)?;
        for event in &events[..count] {
            let (socket, partial) = &mut sockets[event.data() as usize];
            let read = match socket.read(&mut buffer) {
                Ok(0) => bail!("the writer closed a socket early"),
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error.into()),
            };
            let now = now_ns();
            partial.extend_from_slice(&buffer[..read]);
            let whole = partial.len() / arguments.bytes * arguments.bytes;
            for frame in partial[..whole].chunks_exact(arguments.bytes) {
                let sent = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
                arrivals.push(now.saturating_sub(sent));
            }
            partial.drain(..whole);
        }
    }
    arrivals.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    let at = |share: f64| arrivals[((arrivals.len() - 1) as f64 * share) as usize];
    println!(
        "a frame's arrival:      p50 {:.1} ms, p99 {:.1} ms, slowest {:.1} ms ({} frames)",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(arrivals[arrivals.len() - 1]),
        arrivals.len()
    );
    Ok(())
}
