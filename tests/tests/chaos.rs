//! The real-process chaos test: a master (with its registry on disk), three agents and a
//! pymesos framework running 500 short tasks on loopback, while this driver SIGKILLs and
//! restarts the master and agents and SIGKILLs executors at random, from a printed seed,
//! bounded in count and in time. At the end every task finished exactly once from the
//! framework's point of view (the framework, `tests/compat/pymesos_chaos.py`, checks that and
//! the order of what it saw) and no executor or task process is left running.
//!
//! Real processes are not deterministic: the seed fixes the fault schedule and the tasks'
//! durations, not the interleaving. `AGORA_CHAOS_SEED` replays a schedule, `AGORA_CHAOS_TASKS`
//! changes the number of tasks, `AGORA_CHAOS_KEEP` keeps the directories and the framework's
//! update log. Needs the venv that `scripts/setup-python.sh` builds, named by
//! `AGORA_COMPAT_PYTHON`; in CI its absence is a failure.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_sim::Rng;
use agora_tests::{Daemon, free_port, required_in_ci};
use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const AGENTS: usize = 3;
/// No fault starts after this long.
const FAULT_WINDOW: Duration = Duration::from_secs(60);
/// How many faults of each kind at most.
const MASTER_KILLS: u32 = 3;
const AGENT_KILLS: u32 = 6;
const EXECUTOR_KILLS: u32 = 12;
/// The framework's own deadline for all tasks to finish.
const FRAMEWORK_TIMEOUT_SECS: u64 = 400;

/// `low..=high` milliseconds.
fn millis(rng: &mut Rng, low: u64, high: u64) -> Duration {
    Duration::from_millis(rng.range(low, high))
}

/// The daemons, each of which can be killed and started again on the same address and
/// directory.
struct Rig {
    dir: tempfile::TempDir,
    master_port: u16,
    master: Option<Daemon>,
    agents: Vec<(u16, Option<Daemon>)>,
}

impl Rig {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut rig = Self { dir, master_port: free_port()?, master: None, agents: Vec::new() };
        rig.master = Some(Daemon::master(&rig.master_args())?);
        for i in 0..AGENTS {
            rig.agents.push((free_port()?, None));
            rig.start_agent(i)?;
        }
        Ok(rig)
    }

    fn master_addr(&self) -> String {
        format!("127.0.0.1:{}", self.master_port)
    }

    fn master_args(&self) -> Vec<String> {
        let work_dir = self.dir.path().join("master");
        vec![
            "--port".into(),
            self.master_port.to_string(),
            "--work_dir".into(),
            work_dir.to_string_lossy().into_owned(),
            "--allocation_interval".into(),
            "100ms".into(),
            "--heartbeat_interval".into(),
            "1secs".into(),
        ]
    }

    fn start_agent(&mut self, i: usize) -> anyhow::Result<()> {
        let port = self.agents[i].0;
        let work_dir = self.dir.path().join(format!("agent-{i}"));
        let args: Vec<String> = vec![
            "--master".into(),
            self.master_addr(),
            "--port".into(),
            port.to_string(),
            "--work_dir".into(),
            work_dir.to_string_lossy().into_owned(),
            "--resources".into(),
            "cpus:8;mem:8192;disk:4096;ports:[31000-32000]".into(),
            "--status_update_retry_interval".into(),
            "500ms".into(),
            "--registration_backoff_factor".into(),
            "100ms".into(),
            "--registration_backoff_max".into(),
            "500ms".into(),
            // Generous, for a loaded CI machine; executors retry at least this often.
            "--executor_reregistration_timeout".into(),
            "10secs".into(),
            // Bounds how long an executor left behind by a failed run keeps looking for us.
            "--recovery_timeout".into(),
            "1mins".into(),
            // Sandboxes are checked for leftovers at the end, so they stay until then.
            "--gc_delay".into(),
            "1hrs".into(),
        ];
        self.agents[i].1 = Some(Daemon::agent(&args)?);
        Ok(())
    }

    /// Processes that run in a sandbox of this test (executors and their tasks): those whose
    /// working directory lies under the test's directory. The daemons run elsewhere.
    fn sandbox_processes(&self) -> Vec<(i32, String)> {
        let root = self.dir.path();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(root))
            })
            .filter(|pid| agora_tests::alive(*pid))
            .map(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                (pid, cmdline.trim().to_string())
            })
            .collect()
    }

    /// Executor processes (the command executor is `agora executor`).
    fn executors(&self) -> Vec<i32> {
        self.sandbox_processes()
            .into_iter()
            .filter(|(_, cmdline)| cmdline == "agora executor")
            .map(|(pid, _)| pid)
            .collect()
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Injects faults until the framework is done, the window closes or the budget is spent.
/// Every daemon is running again when it returns.
fn inject_faults(
    rig: &mut Rig,
    rng: &mut Rng,
    framework: &mut Child,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let mut done = Vec::new();
    let (mut masters, mut agents, mut executors) = (0, 0, 0);
    while started.elapsed() < FAULT_WINDOW
        && framework.try_wait()?.is_none()
        && (masters < MASTER_KILLS || agents < AGENT_KILLS || executors < EXECUTOR_KILLS)
    {
        std::thread::sleep(millis(rng, 300, 2500));
        let at = started.elapsed().as_secs_f64();
        match rng.range(0, 9) {
            0..=1 if masters < MASTER_KILLS => {
                masters += 1;
                rig.master.take().context("master")?.kill()?;
                std::thread::sleep(millis(rng, 100, 2000));
                rig.master = Some(Daemon::master(&rig.master_args())?);
                done.push(format!("{at:6.2}s master SIGKILLed and restarted"));
            }
            2..=4 if agents < AGENT_KILLS => {
                agents += 1;
                let i = rng.range(0, AGENTS as u64 - 1) as usize;
                rig.agents[i].1.take().context("agent")?.kill()?;
                std::thread::sleep(millis(rng, 100, 2000));
                rig.start_agent(i)?;
                done.push(format!("{at:6.2}s agent {i} SIGKILLed and restarted"));
            }
            5..=9 if executors < EXECUTOR_KILLS => {
                let candidates = rig.executors();
                if candidates.is_empty() {
                    continue;
                }
                executors += 1;
                let victim = candidates[rng.range(0, candidates.len() as u64 - 1) as usize];
                // It may have ended on its own meanwhile.
                let _ = kill(Pid::from_raw(victim), Signal::SIGKILL);
                done.push(format!("{at:6.2}s executor {victim} SIGKILLed"));
            }
            _ => {}
        }
    }
    Ok(done)
}

#[test]
fn tasks_finish_exactly_once_while_daemons_and_executors_die() -> anyhow::Result<()> {
    let Some(python) = std::env::var_os("AGORA_COMPAT_PYTHON") else {
        required_in_ci(
            "the chaos test",
            "AGORA_COMPAT_PYTHON is not set (run scripts/setup-python.sh)",
        );
        return Ok(());
    };
    let seed = env_number("AGORA_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let tasks = env_number("AGORA_CHAOS_TASKS").unwrap_or(500);
    println!(
        "chaos seed {seed}; replay the schedule with: AGORA_CHAOS_SEED={seed} cargo nextest run -p agora-tests --test chaos"
    );
    let mut rng = Rng::new(seed);
    let mut rig = Rig::start()?;
    if std::env::var_os("AGORA_CHAOS_KEEP").is_some() {
        // For post-mortems: the daemons' work directories and the framework's update log.
        rig.dir.disable_cleanup(true);
        println!("keeping {}", rig.dir.path().display());
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compat/pymesos_chaos.py");
    let log = rig.dir.path().join("framework.log");
    let stderr = rig.dir.path().join("framework.stderr");
    let mut framework = Command::new(&python)
        .arg(script)
        .args(["--master", &rig.master_addr()])
        .args(["--tasks", &tasks.to_string(), "--seed", &seed.to_string()])
        .args(["--timeout", &FRAMEWORK_TIMEOUT_SECS.to_string()])
        .arg("--log")
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()
        .context("cannot start the chaos framework")?;

    let faults = inject_faults(&mut rig, &mut rng, &mut framework);
    let status = framework.wait()?;
    let mut stdout = String::new();
    framework.stdout.take().context("stdout")?.read_to_string(&mut stdout)?;
    let faults = faults?;
    println!("faults:\n{}\n--- framework\n{stdout}", faults.join("\n"));
    if !status.success() {
        bail!(
            "the chaos framework failed ({status}) with seed {seed}\n--- its stdout\n{stdout}\n--- the tail of its stderr\n{}\n--- the tail of its update log\n{}",
            tail(&stderr, 40),
            tail(&log, 80)
        );
    }

    // Every executor ends once its task has; nothing may be left after that.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = rig.sandbox_processes();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for (pid, _) in &left {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            bail!("processes left running in sandboxes (seed {seed}): {left:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
