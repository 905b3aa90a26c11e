//! A VM under test: QEMU headless with the serial console on its standard input and output.
//! `wait_for` a pattern, `run` a shell command and get its output and exit status. QEMU is
//! killed when the `Vm` is dropped, whatever happened (timeout, failed assertion, panic), and
//! if the test is failing the whole serial log is saved to the log directory.

use crate::VmError;
use crate::accel::Accel;
use crate::qemu::VmConfig;
use ceremony_os_runner::Runner;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Output and exit status of a command run in the guest.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub output: String,
    pub status: i32,
}

#[derive(Debug)]
pub struct Vm {
    name: String,
    child: Child,
    stdin: ChildStdin,
    serial: Arc<Mutex<Vec<u8>>>,
    /// How much of the cleaned serial text earlier waits consumed.
    consumed: usize,
    commands: u32,
    log_dir: PathBuf,
    _uefi_vars: Option<tempfile::NamedTempFile>,
}

impl Vm {
    /// Start QEMU for `config`. `name` names the saved log (`<log_dir>/<name>.serial.log`).
    pub fn start(name: &str, config: &VmConfig, accel: Accel, log_dir: &Path) -> Result<Vm, VmError> {
        let qemu = config.command(&Runner::new(0), accel)?;
        let mut child = qemu.cmd.spawn_interactive(Stdio::piped())?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let serial = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout is piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr is piped")),
        ] {
            let serial = serial.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    serial.lock().expect("serial lock").extend_from_slice(&buf[..n]);
                }
            });
        }
        Ok(Vm {
            name: name.to_string(),
            child,
            stdin,
            serial,
            consumed: 0,
            commands: 0,
            log_dir: log_dir.to_path_buf(),
            _uefi_vars: qemu.uefi_vars,
        })
    }

    /// Everything the console printed so far, escape sequences and carriage returns removed.
    pub fn text(&self) -> String {
        clean(&self.serial.lock().expect("serial lock"))
    }

    fn tail(&self) -> String {
        let text = self.text();
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        text[start..].to_string()
    }

    /// Wait until `pattern` appears after what earlier waits consumed; return the text up to and
    /// including it.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, VmError> {
        let started = Instant::now();
        loop {
            let text = self.text();
            if let Some(pos) = text.get(self.consumed..).and_then(|t| t.find(pattern)) {
                let end = self.consumed + pos + pattern.len();
                let found = text[self.consumed..end].to_string();
                self.consumed = end;
                return Ok(found);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(VmError::Exited {
                    what: pattern.into(),
                    status: status.to_string(),
                    tail: self.tail(),
                });
            }
            if started.elapsed() > timeout {
                return Err(VmError::Timeout {
                    what: pattern.into(),
                    seconds: timeout.as_secs(),
                    tail: self.tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Type a line on the serial console.
    pub fn send_line(&mut self, line: &str) -> Result<(), VmError> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| VmError::Io { path: "qemu stdin".into(), source: e })
    }

    /// Run a shell command in the guest (at a shell prompt) and return its output and status.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<CommandResult, VmError> {
        self.commands += 1;
        let n = self.commands;
        // The markers are computed by printf, so the echoed command line never contains them.
        self.send_line(&format!("printf '@@B%s@@\\n' {n}; {command}; printf '@@E%s:%s@@\\n' {n} $?"))?;
        let begin = format!("@@B{n}@@\n");
        self.wait_for(&begin, timeout)?;
        let end = format!("@@E{n}:");
        let output = self.wait_for(&end, timeout)?;
        let status_text = self.wait_for("@@", timeout)?;
        let status = status_text.trim_end_matches("@@").trim().parse().unwrap_or(-1);
        Ok(CommandResult { output: output.trim_end_matches(&end).trim_end_matches('\n').to_string(), status })
    }

    /// Save the serial log as `<log_dir>/<name>.serial.log`; returns the path.
    pub fn save_log(&self) -> Option<PathBuf> {
        std::fs::create_dir_all(&self.log_dir).ok()?;
        let path = self.log_dir.join(format!("{}.serial.log", self.name));
        std::fs::write(&path, self.serial.lock().ok()?.as_slice()).ok()?;
        Some(path)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Some(path) = self.save_log()
        {
            eprintln!("serial console log of VM {:?}: {}", self.name, path.display());
        }
    }
}

/// Remove ANSI escape sequences and carriage returns.
pub fn clean(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for c in chars.by_ref() {
                        if c == '\u{7}' {
                            break;
                        }
                    }
                }
                // Character set designation: ESC ( B and the like.
                Some('(' | ')') => {
                    chars.next();
                    chars.next();
                }
                _ => {
                    chars.next();
                }
            },
            '\r' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn escapes_and_carriage_returns_are_removed() {
        assert_eq!(clean(b"\x1b[?2004hroot@ceremony:~# ls\r\n"), "root@ceremony:~# ls\n");
        assert_eq!(clean(b"a\x1b]0;title\x07b\x1b(Bc"), "abc");
    }
}
