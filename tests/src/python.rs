//! The Python client (`clients/python`) under test: one virtualenv under the target
//! dir that the tests make themselves (`python3 -m venv`, then pip installs the client
//! with its test extras from PyPI), reused between runs and made anew when the client's
//! `pyproject.toml`, the interpreter or the paths change; the contract's stubs generated
//! from `proto/` by the client's own build step for every run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::repo_root;

/// The client's virtualenv, with the client installed (editable) and its test extras.
pub struct PythonClient {
    venv: PathBuf,
}

/// What one Python run printed (stdout, then stderr) and whether it exited 0.
pub struct PythonRun {
    /// Exited 0 within its time.
    pub success: bool,
    /// Everything it printed, and why it was stopped if it was.
    pub output: String,
}

/// `clients/python` of this checkout.
pub fn client_dir() -> PathBuf {
    repo_root().join("clients/python")
}

/// The interpreter the venv is made from: `$HANDOFF_PYTHON`, else `python3`.
fn interpreter() -> String {
    std::env::var("HANDOFF_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `target/` of this build: test executables live in `target/<profile>/deps/`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Runs `command` to the end; its exit status and what it printed.
fn output_of(command: &mut Command) -> (bool, String) {
    match command.stdin(Stdio::null()).output() {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

impl PythonClient {
    /// The venv, made or updated on first use. Fails the test, saying what to do, when
    /// there is no Python 3 with `venv`, or pip cannot install from the package index.
    pub fn ready() -> &'static PythonClient {
        static CLIENT: OnceLock<PythonClient> = OnceLock::new();
        CLIENT.get_or_init(|| {
            let venv = target_dir().join("python-venv");
            let client = PythonClient { venv };
            client.prepare();
            client
        })
    }

    fn python(&self) -> PathBuf {
        self.venv.join("bin/python")
    }

    fn prepare(&self) {
        let python = interpreter();
        let (found, version) = output_of(Command::new(&python).arg("--version"));
        assert!(
            found,
            "the Python client's test needs Python 3.10 or later: `{python}` did not run ({}). \
             Install python3 (with venv and pip; Debian: python3-venv) or set HANDOFF_PYTHON.",
            version.trim()
        );
        let pyproject = client_dir().join("pyproject.toml");
        let requirements = std::fs::read_to_string(&pyproject)
            .unwrap_or_else(|e| panic!("{}: {e}", pyproject.display()));
        // Whatever the venv was made from: when any of it changes, it is made anew.
        let stamp = format!(
            "{}\n{}\n{}\n{requirements}",
            version.trim(),
            self.venv.display(),
            client_dir().display()
        );
        let stamp_file = self.venv.join("handoff-client.stamp");
        if self.python().exists()
            && std::fs::read_to_string(&stamp_file).ok() == Some(stamp.clone())
        {
            return;
        }
        if self.venv.exists() {
            std::fs::remove_dir_all(&self.venv)
                .unwrap_or_else(|e| panic!("remove {}: {e}", self.venv.display()));
        }
        let (made, out) = output_of(Command::new(&python).args(["-m", "venv"]).arg(&self.venv));
        assert!(
            made,
            "`{python} -m venv {}` failed (Debian: apt-get install python3-venv):\n{out}",
            self.venv.display()
        );
        let (installed, out) = output_of(
            Command::new(self.python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--editable",
                ])
                .arg(format!("{}[test]", client_dir().display())),
        );
        assert!(
            installed,
            "pip could not install the Python client and its test extras (is PyPI reachable?):\n{out}"
        );
        std::fs::write(&stamp_file, stamp)
            .unwrap_or_else(|e| panic!("{}: {e}", stamp_file.display()));
    }

    /// Generates the contract's stubs from `proto/` into `out` (`build_stubs.py`).
    pub fn generate_stubs(&self, out: &Path) {
        let (generated, output) = output_of(
            Command::new(self.python())
                .arg(client_dir().join("build_stubs.py"))
                .arg("--out")
                .arg(out),
        );
        assert!(generated, "build_stubs.py failed:\n{output}");
    }

    /// Runs the venv's Python with `args` in `clients/python`, the stubs in `stubs` on
    /// its path and `envs` set; stops it after `within`.
    pub fn run(
        &self,
        stubs: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        within: Duration,
    ) -> PythonRun {
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log_path = log_dir.path().join("output");
        let log = std::fs::File::create(&log_path).expect("python output file");
        let mut child = Command::new(self.python())
            .args(args)
            .current_dir(client_dir())
            .env("PYTHONPATH", stubs)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("output handle"))
            .stderr(log)
            .spawn()
            .expect("the venv's python starts");
        let deadline = Instant::now() + within;
        let (success, stopped) = loop {
            match child.try_wait() {
                Ok(Some(status)) => break (status.success(), String::new()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break (false, format!("\n(stopped after {within:?})"));
                }
            }
        };
        let output = std::fs::read_to_string(&log_path).unwrap_or_default() + &stopped;
        PythonRun { success, output }
    }
}
