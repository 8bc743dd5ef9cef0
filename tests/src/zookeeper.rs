//! A real ZooKeeper for the high-availability tests: Debian's `zookeeper` package (3.8), run
//! as `ZooKeeperServerMain` (one server) or `QuorumPeerMain` (an ensemble member) on
//! 127.0.0.1 with free ports and a temporary data directory, stopped by its PID.
//!
//! The test command installs the package; where it is missing (a developer's machine) the
//! tests say so and skip, and in CI they fail (`required_in_ci`). Sessions are short
//! (`tickTime` 200 ms, `minSessionTimeout` 1 s) so that expiry is quick to provoke.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{free_port, required_in_ci};

/// Where Debian installs the server and the jars it needs.
const JARS: &str = "/usr/share/java";

/// Whether a ZooKeeper server can be started here; if not, says why (and fails in CI).
pub fn available(test: &str) -> bool {
    let jar = Path::new(JARS).join("zookeeper.jar");
    if !jar.exists() {
        required_in_ci(test, &format!("{} is missing (apt-get install zookeeper)", jar.display()));
        return false;
    }
    if Command::new("java").arg("-version").output().is_err() {
        required_in_ci(test, "java is not installed");
        return false;
    }
    true
}

/// One ZooKeeper server process.
pub struct ZooKeeper {
    child: Option<Child>,
    /// `127.0.0.1:port` clients connect to.
    pub addr: String,
    dir: tempfile::TempDir,
    config: String,
}

impl ZooKeeper {
    /// A standalone server.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config = base_config(dir.path(), port);
        let mut zk = ZooKeeper { child: None, addr: format!("127.0.0.1:{port}"), dir, config };
        zk.spawn("org.apache.zookeeper.server.ZooKeeperServerMain")?;
        zk.wait_serving()?;
        Ok(zk)
    }

    /// A `zk://` URL for the group `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("zk://{}{path}", self.addr)
    }

    /// The server's PID.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILLs the server (its data directory stays, so `restart` brings the same state back).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self, main: &str) -> anyhow::Result<()> {
        self.kill();
        self.spawn(main)?;
        Ok(())
    }

    fn spawn(&mut self, main: &str) -> anyhow::Result<()> {
        let config = self.dir.path().join("zoo.cfg");
        std::fs::write(&config, &self.config)?;
        let log = std::fs::File::create(self.dir.path().join("zookeeper.log"))?;
        let child = Command::new("java")
            .args(["-Xmx256m", "-Xss512k", "-XX:+UseSerialGC", "-cp"])
            .arg(format!("{JARS}/*"))
            .arg(main)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start java (is ZooKeeper installed?)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server answers `srvr` as serving (a member of an ensemble only does
    /// once it has a quorum).
    pub fn wait_serving(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(self.dir.path().join("zookeeper.log"))
                    .unwrap_or_default();
                bail!("ZooKeeper exited with {status}:\n{log}");
            }
            if self.four_letter("srvr").is_ok_and(|answer| answer.contains("Mode:")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("ZooKeeper at {} did not start serving within 60 s", self.addr);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a four-letter command (`srvr` is the one whitelisted by default).
    pub fn four_letter(&self, command: &str) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(command.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.kill();
    }
}

fn base_config(dir: &Path, port: u16) -> String {
    format!(
        "tickTime=200\nminSessionTimeout=1000\nmaxSessionTimeout=20000\ninitLimit=50\nsyncLimit=25\n\
         dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
         4lw.commands.whitelist=srvr,ruok\n",
        dir.join("data").display()
    )
}

/// A three-server ensemble on 127.0.0.1.
pub struct Ensemble {
    pub servers: Vec<ZooKeeper>,
}

/// The main class of an ensemble member.
pub const QUORUM_MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

impl Ensemble {
    pub fn start(size: usize) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        for _ in 0..size {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let peers: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer, election))| {
                format!("server.{}=127.0.0.1:{peer}:{election}\n", i + 1)
            })
            .collect();
        let mut servers = Vec::new();
        for (i, (client, _, _)) in ports.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            std::fs::create_dir_all(dir.path().join("data"))?;
            std::fs::write(dir.path().join("data/myid"), format!("{}\n", i + 1))?;
            let config = format!("{}{peers}", base_config(dir.path(), *client));
            let mut zk =
                ZooKeeper { child: None, addr: format!("127.0.0.1:{client}"), dir, config };
            zk.spawn(QUORUM_MAIN)?;
            servers.push(zk);
        }
        for server in &mut servers {
            server.wait_serving()?;
        }
        Ok(Ensemble { servers })
    }

    /// A `zk://` URL naming every member.
    pub fn url(&self, path: &str) -> String {
        let hosts: Vec<&str> = self.servers.iter().map(|s| s.addr.as_str()).collect();
        format!("zk://{}{path}", hosts.join(","))
    }
}
