//! The access log's way out. One line per request is nearly all of the log's volume, and writing
//! it on the request's own thread made every request wait for the writer: for journald a
//! datagram per line, which blocks while the journal is busy; for stderr a write that blocks
//! for good when nothing reads the pipe (the whole server stopped answering). Here the line is
//! encoded on the request's thread into a buffer of its own and handed to one writer thread
//! through a bounded queue. When the queue is full the line is dropped and counted
//! (`ef_log_lines_dropped_total`), and the writer logs how many it lost as soon as it has caught
//! up, so nothing is lost silently.
//!
//! Only the access log goes this way. Warnings, errors and the startup lines are few, and the last
//! ones before an exit must not wait in a queue: they are written at once, as before.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// The access log's target: `tracing` events with it take the pipe.
pub const ACCESS_TARGET: &str = "euraflow::access";

/// Lines the queue holds before new ones are dropped: a few seconds of a busy server's access
/// log (an access line is ~300 bytes, so at most a few MiB).
const QUEUE_LINES: usize = 16 * 1024;
/// A batch of text lines written with one `write` (a stream takes many lines at once).
const BATCH_BYTES: usize = 64 * 1024;
/// Between two rounds of a busy writer: lines reach the log at most this much later.
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);
/// journald's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Access lines dropped because the writer fell behind, since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Wait until every queued line is written, or `bound` has passed.
pub fn wait_written(bound: std::time::Duration) {
    let deadline = std::time::Instant::now() + bound;
    while PENDING.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Where the writer thread puts the lines.
pub enum Sink {
    /// One datagram per entry (journald's native protocol).
    Journal(std::os::unix::net::UnixDatagram),
    /// Text or JSON lines, batched.
    Stream(Box<dyn Write + Send>),
}

impl Sink {
    pub fn journal() -> io::Result<Sink> {
        Ok(Sink::Journal(std::os::unix::net::UnixDatagram::unbound()?))
    }

    pub fn stderr() -> Sink {
        Sink::Stream(Box::new(io::stderr()))
    }
}

/// The request side of the queue: cheap to clone, never blocks.
#[derive(Clone)]
pub struct AccessPipe {
    tx: SyncSender<Vec<u8>>,
}

impl AccessPipe {
    /// Start the writer thread.
    pub fn spawn(sink: Sink) -> io::Result<AccessPipe> {
        Self::spawn_with(sink, QUEUE_LINES)
    }

    fn spawn_with(sink: Sink, lines: usize) -> io::Result<AccessPipe> {
        let (tx, rx) = sync_channel(lines);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(&rx, sink))?;
        Ok(AccessPipe { tx })
    }

    /// Queue one encoded line; if the queue is full, count it as dropped.
    pub fn send(&self, line: Vec<u8>) {
        PENDING.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                PENDING.fetch_sub(1, Ordering::AcqRel);
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_loop(rx: &Receiver<Vec<u8>>, mut sink: Sink) {
    let mut reported = 0;
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    // Idle, the writer waits on the queue and the first line wakes it. Busy, it pauses between
    // rounds instead of waiting on the queue, so requests queue their lines without waking a
    // thread each time (a futex wake per request cost more than formatting the line).
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(first) = next.take() {
            write_round(rx, &mut sink, &mut batch, first);
            // Caught up (or a round further): say what was lost meanwhile. The notice is an
            // ordinary warning, written at once in the log's format.
            let dropped = DROPPED.load(Ordering::Relaxed);
            if dropped > reported {
                tracing::warn!(
                    lost = dropped - reported,
                    lost_total = dropped,
                    "access log: lines dropped because the log writer (journald or stderr) fell behind; see ef_log_lines_dropped_total"
                );
                reported = dropped;
            }
            std::thread::sleep(BUSY_PAUSE);
            next = rx.try_recv().ok();
        }
    }
}

/// Write `first` and whatever is queued behind it (at most a queue's worth).
fn write_round(rx: &Receiver<Vec<u8>>, sink: &mut Sink, batch: &mut Vec<u8>, first: Vec<u8>) {
    let mut queued = std::iter::once(first).chain(rx.try_iter().take(QUEUE_LINES));
    match sink {
        Sink::Journal(socket) => {
            // A failed send (journald restarting) loses the line; count it like a full queue.
            for line in queued {
                if socket.send_to(&line, JOURNAL_SOCKET).is_err() {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
                PENDING.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Sink::Stream(out) => loop {
            batch.clear();
            let mut lines: u64 = 0;
            for line in queued.by_ref() {
                batch.extend_from_slice(&line);
                lines += 1;
                if batch.len() >= BATCH_BYTES {
                    break;
                }
            }
            if lines == 0 {
                break;
            }
            if out.write_all(batch).and_then(|()| out.flush()).is_err() {
                DROPPED.fetch_add(lines, Ordering::Relaxed);
            }
            PENDING.fetch_sub(lines, Ordering::AcqRel);
        },
    }
}

/// `NAME\n<u64 LE length><value>\n`: the binary-safe form of a journal field (a value may hold a
/// newline). `name` must already be a valid journal field name.
pub(super) fn put_field(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// A `tracing` field: `message` is `MESSAGE`; other names are upper-cased, with anything but
/// letters, digits and `_` left out and no leading `_` (journald reserves those).
pub(super) fn put_named(buf: &mut Vec<u8>, name: &str, write_value: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend(
        name.bytes()
            .map(|c| if c == b'.' { b'_' } else { c })
            .filter(|c| *c == b'_' || c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase()),
    );
    let leading = buf[start..].iter().take_while(|c| **c == b'_').count();
    buf.drain(start..start + leading);
    if buf.len() == start {
        return;
    }
    buf.push(b'\n');
    let len_at = buf.len();
    buf.extend_from_slice(&[0; 8]);
    write_value(buf);
    let len = (buf.len() - len_at - 8) as u64;
    buf[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
    buf.push(b'\n');
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Parse journald's binary field form back into (name, value) pairs.
    pub(crate) fn parse(mut b: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let nl = b.iter().position(|c| *c == b'\n').expect("name ends");
            let name = String::from_utf8(b[..nl].to_vec()).expect("name");
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().expect("length")) as usize;
            let value = String::from_utf8(b[nl + 9..nl + 9 + len].to_vec()).expect("value");
            assert_eq!(b[nl + 9 + len], b'\n');
            out.push((name, value));
            b = &b[nl + 10 + len..];
        }
        out
    }

    #[test]
    fn journal_fields_are_named_as_journald_wants_and_binary_safe() {
        let mut buf = Vec::new();
        put_named(&mut buf, "http_status", |b| b.extend_from_slice(b"200"));
        put_named(&mut buf, "message", |b| b.extend_from_slice(b"two\nlines"));
        put_named(&mut buf, "_reserved.name", |b| b.extend_from_slice(b"x"));
        put_named(&mut buf, "---", |b| {
            b.extend_from_slice(b"no name: skipped")
        });
        put_field(&mut buf, "PRIORITY", b"6");
        assert_eq!(
            parse(&buf),
            [
                ("HTTP_STATUS".to_owned(), "200".to_owned()),
                ("MESSAGE".to_owned(), "two\nlines".to_owned()),
                ("RESERVED_NAME".to_owned(), "x".to_owned()),
                ("PRIORITY".to_owned(), "6".to_owned()),
            ]
        );
    }

    /// A writer that blocks until told to go on, as a stderr pipe nobody reads does.
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().expect("gate");
            while !*open {
                open = cv.wait(open).expect("gate");
            }
            self.out.lock().expect("out").extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_writer_never_blocks_the_sender_and_drops_are_counted() {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let pipe = AccessPipe::spawn_with(
            Sink::Stream(Box::new(Gate {
                open: open.clone(),
                out: out.clone(),
            })),
            8,
        )
        .expect("writer thread");
        let before = dropped_total();
        // The writer takes the first line and blocks in `write` (or, if it has not taken it
        // yet, the queue holds one line less); 8 more fill the queue; the rest are dropped, and
        // sending never waits.
        let started = std::time::Instant::now();
        for i in 0..100 {
            pipe.send(format!("line {i}\n").into_bytes());
            if i == 0 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let dropped = dropped_total() - before;
        assert!(
            (90..=92).contains(&dropped),
            "100 lines, 1 being written, 8 queued: {dropped} dropped"
        );
        *open.0.lock().expect("gate") = true;
        open.1.notify_all();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = String::from_utf8(out.lock().expect("out").clone()).expect("utf-8");
            if text.lines().count() as u64 == 100 - dropped {
                assert!(text.starts_with("line 0\n"), "{text}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not written: {text}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
