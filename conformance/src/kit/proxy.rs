//! A TCP proxy that injects network faults between a client and a server.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::sleep;

use super::KitError;

/// What a [`FaultProxy`] does with traffic. Every mode applies to the
/// connections already open as well as to new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes as they come.
    Pass,
    /// Forward each chunk of bytes after this delay, in each direction.
    Latency(Duration),
    /// A network partition: connections are accepted and kept open, but no
    /// byte goes through in either direction and nothing is closed. Bytes
    /// already sent are delivered once the proxy passes again, as TCP
    /// retransmission would deliver them after a partition heals.
    Blackhole,
    /// Every open connection is reset (RST), and new ones are reset as soon
    /// as they are accepted, until the mode changes.
    Reset,
}

/// A TCP proxy on a free loopback port in front of one upstream server.
///
/// Point a client at [`FaultProxy::addr`] instead of the server, then switch
/// modes to cut, slow or break its connections. Dropping the proxy closes
/// all its connections. Needs a running Tokio runtime.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`, in [`ProxyMode::Pass`].
    pub async fn start(upstream: SocketAddr) -> Result<FaultProxy, KitError> {
        // Port 0: the proxy holds its listener from here on, so no other
        // server can take its port, and it picks from the ephemeral range,
        // away from the ports the kit hands to servers.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| KitError::io("cannot bind the fault proxy", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| KitError::io("cannot read the proxy's address", e))?;
        let (mode, watcher) = watch::channel(ProxyMode::Pass);
        let task = tokio::spawn(accept_loop(listener, upstream, watcher));
        Ok(FaultProxy {
            addr,
            upstream,
            mode,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// Switches to `mode`.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// Forwards bytes as they come; heals a blackhole or a reset.
    pub fn pass(&self) {
        self.set_mode(ProxyMode::Pass);
    }

    /// Delays every chunk by `delay`, in each direction.
    pub fn latency(&self, delay: Duration) {
        self.set_mode(ProxyMode::Latency(delay));
    }

    /// Partitions: nothing goes through, nothing is closed.
    pub fn blackhole(&self) {
        self.set_mode(ProxyMode::Blackhole);
    }

    /// Resets every connection, and every new one until [`FaultProxy::pass`].
    pub fn reset(&self) {
        self.set_mode(ProxyMode::Reset);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every
        // connection task, which closes their sockets.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<ProxyMode>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(serve(client, upstream, mode.clone()));
                }
                // Out of file descriptors, or the like: try again shortly
                // rather than spin.
                Err(_) => sleep(Duration::from_millis(10)).await,
            },
            // Forget finished connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Carries one client connection to the upstream server and back, obeying
/// the mode as it changes.
async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    // While blackholed the upstream connection is not even opened, so the
    // server sees nothing of this client.
    if !wait_open(&mut mode).await {
        return reset(client);
    }
    let connected = tokio::select! {
        connected = TcpStream::connect(upstream) => connected,
        () = until_reset(mode.clone()) => return reset(client),
    };
    let Ok(mut server) = connected else {
        // The server is down: the client should see a broken connection,
        // as it would without the proxy.
        return reset(client);
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut client = client;
    let outcome = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let forward = async {
            tokio::try_join!(
                pump(&mut client_read, &mut server_write, mode.clone()),
                pump(&mut server_read, &mut client_write, mode.clone()),
            )
        };
        tokio::select! {
            forwarded = forward => forwarded.is_ok(),
            () = until_reset(mode.clone()) => false,
        }
    };
    if !outcome {
        // Reset mode, or one side broke: break the other side too.
        reset(client);
        reset(server);
    }
    // Otherwise both sides closed cleanly, and dropping the sockets ends it.
}

/// Copies bytes one way, checking the mode before forwarding each chunk.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    mut mode: watch::Receiver<ProxyMode>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        // Even an end of stream waits out a blackhole: a FIN does not cross
        // a partition either.
        if !wait_open(&mut mode).await {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if n == 0 {
            // Pass the half-close on; the other direction may go on.
            return to.shutdown().await;
        }
        let current = *mode.borrow();
        if let ProxyMode::Latency(delay) = current {
            sleep(delay).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Waits while the proxy is blackholed. False if it is, or turns to, reset.
async fn wait_open(mode: &mut watch::Receiver<ProxyMode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            ProxyMode::Pass | ProxyMode::Latency(_) => return true,
            ProxyMode::Reset => return false,
            ProxyMode::Blackhole => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

/// Resolves when the proxy turns to [`ProxyMode::Reset`].
async fn until_reset(mut mode: watch::Receiver<ProxyMode>) {
    loop {
        if *mode.borrow_and_update() == ProxyMode::Reset {
            return;
        }
        if mode.changed().await.is_err() {
            // The proxy is gone; its task is being aborted.
            return std::future::pending().await;
        }
    }
}

/// Closes with RST rather than FIN: the peer sees "connection reset".
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
