//! A log file the proxy appends to: a path (created if missing) or stdout,
//! reopened when asked (log rotation), a failing write logged once until
//! writing works again.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// An append-only log destination.
pub struct LogFile {
    /// What it is, for warnings: `diff log`, `access log`.
    what: &'static str,
    path: Option<PathBuf>,
    file: Option<File>,
    reopen: Arc<AtomicBool>,
    failing: bool,
}

impl LogFile {
    /// Appends to `path` (created if missing); `-` is stdout.
    pub fn open(path: &Path, what: &'static str) -> io::Result<Self> {
        let (path, file) = if path == Path::new("-") {
            (None, None)
        } else {
            (Some(path.to_path_buf()), Some(append(path)?))
        };
        Ok(LogFile {
            what,
            path,
            file,
            reopen: Arc::new(AtomicBool::new(false)),
            failing: false,
        })
    }

    /// Set it (from a SIGHUP handler, say) to have the file reopened
    /// before the next write.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.reopen.clone()
    }

    /// A reopen was asked for and not done yet.
    pub fn reopen_asked(&self) -> bool {
        self.reopen.load(Ordering::Relaxed)
    }

    /// Reopens the file if that was asked; keeps the old one if the path
    /// cannot be opened (logged).
    pub fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Some(path) = &self.path {
            match append(path) {
                Ok(f) => self.file = Some(f),
                Err(e) => log::warn!(
                    "cannot reopen the {} {}: {e}; keeping the old file",
                    self.what,
                    path.display()
                ),
            }
        }
    }

    /// Writes `bytes` whole, in one call (a reader never sees half a
    /// line), after a reopen that was asked for.
    pub fn write(&mut self, bytes: &[u8]) {
        self.reopen_if_asked();
        if bytes.is_empty() {
            return;
        }
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
        };
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                let name = self.path.as_ref().map_or("stdout".into(), |p| p.display().to_string());
                log::warn!("cannot write the {} {name}: {e}; lines are lost", self.what);
            }
            Err(_) => {}
        }
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
