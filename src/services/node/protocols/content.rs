//! `/goop/content/1.0.0`: the peer's label, one line, with no request — also the probe that
//! tells whether a peer is reachable.

use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use super::outbound::{Outbound, one_shot, release_at_end};
use super::{FetchError, REQUEST_TIMEOUT, read_header};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/goop/content/1.0.0");

/// Writes the current `label` on one line.
pub(super) async fn serve(
    stream: libp2p::Stream,
    label: watch::Receiver<String>,
) -> std::io::Result<()> {
    let mut write = stream.compat_write();
    let label = label.borrow().replace('\n', " ");
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        write.write_all(format!("{label}\n").as_bytes()).await?;
        write.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Asks `peer` for its label; also tells whether it is reachable.
pub async fn fetch(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
) -> Result<String, FetchError> {
    let ((reader, label), slot) = one_shot(control, outbound, peer, PROTOCOL, |stream| async {
        let mut reader = BufReader::new(stream.compat());
        let label = read_header(&mut reader).await?;
        Ok((reader, label))
    })
    .await?;
    release_at_end(reader, slot);
    Ok(label)
}
