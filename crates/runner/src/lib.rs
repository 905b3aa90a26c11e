//! The one process runner. Every subprocess ceremony-os starts goes through [`Runner`], which
//! gives it a scrubbed environment that does not depend on the caller: `LC_ALL=C.UTF-8`, `TZ=UTC`,
//! `SOURCE_DATE_EPOCH`, umask 022, a fixed `HOME` and `PATH`, and an explicit working directory
//! (never the caller's); and it is killed if ceremony-os dies. Nothing else from the parent environment passes unless named with
//! [`Cmd::env`]. Each command is logged before it runs, and a failure carries the command line,
//! the exit status and the tail of its standard error.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

/// PATH given to every subprocess.
pub const FIXED_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// HOME given to every subprocess: a path that does not exist, so nothing reads a user's dotfiles.
pub const FIXED_HOME: &str = "/nonexistent";
const STDERR_TAIL_BYTES: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr_tail))]
    Failed { command: String, status: ExitStatus, stderr_tail: String },
    #[error("`{command}`: {source}")]
    Io { command: String, source: std::io::Error },
}

fn stderr_suffix(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!(":\n{}", tail.trim_end()) }
}

/// The fixed environment every command gets.
#[derive(Debug, Clone)]
pub struct Runner {
    source_date_epoch: i64,
}

impl Runner {
    pub fn new(source_date_epoch: i64) -> Self {
        Runner { source_date_epoch }
    }

    /// A command in `dir` (the working directory is always explicit).
    pub fn cmd(&self, program: impl AsRef<OsStr>, dir: impl Into<PathBuf>) -> Cmd {
        Cmd {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            envs: vec![
                ("LC_ALL".into(), "C.UTF-8".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("TZ".into(), "UTC".into()),
                ("HOME".into(), FIXED_HOME.into()),
                ("PATH".into(), FIXED_PATH.into()),
                ("SOURCE_DATE_EPOCH".into(), self.source_date_epoch.to_string().into()),
            ],
            dir: dir.into(),
        }
    }
}

/// One command to run. Build it with [`Runner::cmd`].
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: PathBuf,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Cmd {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Add or override one variable of the fixed environment.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        let key = key.as_ref().to_os_string();
        self.envs.retain(|(k, _)| *k != key);
        self.envs.push((key, value.as_ref().to_os_string()));
        self
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).env_clear().envs(self.envs.iter().map(|(k, v)| (k, v))).current_dir(&self.dir);
        c.stdin(Stdio::null());
        prepare_child(&mut c);
        c
    }

    /// Run to completion, capturing standard output and error. Non-zero exit is an error.
    pub fn output(&self) -> Result<Output, RunError> {
        tracing::debug!(command = %self, dir = %self.dir.display(), "run");
        let out = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| RunError::Spawn { command: self.to_string(), source })?;
        if !out.status.success() {
            return Err(RunError::Failed {
                command: self.to_string(),
                status: out.status,
                stderr_tail: tail(&out.stderr),
            });
        }
        Ok(Output { stdout: out.stdout, stderr: out.stderr })
    }

    /// Run to completion; standard output is passed to `on_line` line by line as it comes (for
    /// progress), standard error is captured for the error message.
    pub fn run_streaming(&self, mut on_line: impl FnMut(&str)) -> Result<(), RunError> {
        tracing::debug!(command = %self, dir = %self.dir.display(), "run");
        let io_err = |source| RunError::Io { command: self.to_string(), source };
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RunError::Spawn { command: self.to_string(), source })?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(io_err)?;
            if n == 0 {
                break;
            }
            on_line(String::from_utf8_lossy(&line).trim_end());
        }
        let status = child.wait().map_err(io_err)?;
        let stderr = stderr_reader.join().unwrap_or_default();
        if !status.success() {
            return Err(RunError::Failed { command: self.to_string(), status, stderr_tail: tail(&stderr) });
        }
        Ok(())
    }
}

impl Cmd {
    /// Run to completion with standard output and error merged; every line goes to `on_line` as
    /// it comes (for progress and logs). On failure the error carries the last lines.
    pub fn run_merged(&self, mut on_line: impl FnMut(&str)) -> Result<(), RunError> {
        tracing::debug!(command = %self, dir = %self.dir.display(), "run");
        let io_err = |source| RunError::Io { command: self.to_string(), source };
        let (reader, writer) = std::io::pipe().map_err(io_err)?;
        let writer2 = writer.try_clone().map_err(io_err)?;
        let mut command = self.command();
        command.stdout(writer).stderr(writer2);
        let mut child =
            command.spawn().map_err(|source| RunError::Spawn { command: self.to_string(), source })?;
        // The parent's copies of the write end must go, or the reader never sees EOF.
        drop(command);
        let mut reader = reader;
        let mut recent: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut pending = Vec::new();
        let mut buf = [0u8; 8192];
        // Lines end at '\n' or '\r' (progress bars redraw with '\r'); empty ones are dropped.
        let mut emit = |bytes: &[u8], recent: &mut std::collections::VecDeque<String>| {
            let text = String::from_utf8_lossy(bytes).trim_end().to_string();
            if text.is_empty() {
                return;
            }
            on_line(&text);
            recent.push_back(text);
            if recent.len() > 40 {
                recent.pop_front();
            }
        };
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' || b == b'\r' {
                    emit(&pending, &mut recent);
                    pending.clear();
                } else {
                    pending.push(b);
                }
            }
        }
        emit(&pending, &mut recent);
        let status = child.wait().map_err(io_err)?;
        if !status.success() {
            let stderr_tail = recent.into_iter().collect::<Vec<_>>().join("\n");
            return Err(RunError::Failed { command: self.to_string(), status, stderr_tail });
        }
        Ok(())
    }
}

impl Cmd {
    /// Start the command with standard input and output piped to the caller (for interactive
    /// programs such as a VM's serial console) and standard error going to `stderr`. The caller
    /// owns the child; it still dies with this process.
    pub fn spawn_interactive(&self, stderr: Stdio) -> Result<std::process::Child, RunError> {
        tracing::debug!(command = %self, dir = %self.dir.display(), "spawn");
        let mut command = self.command();
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        command.spawn().map_err(|source| RunError::Spawn { command: self.to_string(), source })
    }

    /// Run in the foreground with the caller's terminal (for `ceremony-os boot`):
    /// standard input, output and error are inherited. Returns the exit status.
    pub fn run_attached(&self) -> Result<ExitStatus, RunError> {
        tracing::debug!(command = %self, dir = %self.dir.display(), "run attached");
        let mut command = self.command();
        command.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
        command.status().map_err(|source| RunError::Spawn { command: self.to_string(), source })
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", shell_quote(&self.program))?;
        for a in &self.args {
            write!(f, " {}", shell_quote(a))?;
        }
        Ok(())
    }
}

fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// In the child, before exec: umask 022, and die with the parent, so that killing ceremony-os
/// (even with SIGKILL) never leaves a build step running on its own.
#[allow(unsafe_code)]
fn prepare_child(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask(2) and prctl(2) are async-signal-safe and touch only the child's own state.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o022);
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_scrubbed_and_fixed() {
        // SAFETY-free: only the child sees the runner's environment; the parent's is irrelevant.
        let dir = tempfile::tempdir().unwrap();
        let out = Runner::new(1234)
            .cmd("/bin/sh", dir.path())
            .args(["-c", "env | sort; umask; pwd"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for expected in ["LC_ALL=C.UTF-8", "TZ=UTC", "SOURCE_DATE_EPOCH=1234", "HOME=/nonexistent"] {
            assert!(lines.contains(&expected), "{expected} missing in {text}");
        }
        assert!(lines.contains(&"0022"), "umask not 022: {text}");
        assert!(lines.contains(&dir.path().to_str().unwrap()), "cwd not explicit: {text}");
        assert!(!text.contains("CARGO"), "parent environment leaked: {text}");
    }

    #[test]
    fn failure_carries_command_status_and_stderr() {
        let err = Runner::new(0)
            .cmd("/bin/sh", "/")
            .args(["-c", "echo broken thing >&2; exit 3"])
            .output()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`/bin/sh -c 'echo broken thing >&2; exit 3'` failed"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("broken thing"), "{err}");
    }

    #[test]
    fn merged_output_is_streamed_and_kept_for_errors() {
        let mut seen = Vec::new();
        let err = Runner::new(0)
            .cmd("/bin/sh", "/")
            .args(["-c", "echo out; printf '10%%\\r20%%\\r' >&2; echo err >&2; exit 4"])
            .run_merged(|l| seen.push(l.to_string()))
            .unwrap_err()
            .to_string();
        seen.sort();
        assert_eq!(seen, ["10%", "20%", "err", "out"]);
        assert!(err.contains("exit status: 4") && err.contains("err"), "{err}");
    }

    #[test]
    fn streaming_delivers_lines() {
        let mut seen = Vec::new();
        Runner::new(0)
            .cmd("/bin/sh", "/")
            .args(["-c", "echo a; echo b"])
            .run_streaming(|l| seen.push(l.to_string()))
            .unwrap();
        assert_eq!(seen, ["a", "b"]);
    }
}
