//! `/goop/avatar/1.0.0`: the peer's picture with no request — `OK <size>\n` and a PNG or JPEG,
//! or `NONE\n`.

use std::path::Path;

use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use super::outbound::{Outbound, one_shot, release_at_end};
use super::{FetchError, read_header, unreachable, within_stall_limit};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/goop/avatar/1.0.0");

/// Largest avatar served.
const MAX_AVATAR_BYTES: u64 = crate::services::avatar::MAX_AVATAR_BYTES as u64;

/// Sends the avatar found in directory `dir`, if any.
pub(super) async fn serve(stream: libp2p::Stream, dir: Option<&Path>) -> std::io::Result<()> {
    let mut write = stream.compat_write();
    let path = dir.and_then(crate::services::avatar::find);
    let image = match path {
        Some(path) => match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.len() <= MAX_AVATAR_BYTES => tokio::fs::read(&path).await.ok(),
            _ => None,
        },
        None => None,
    };
    match image {
        Some(bytes) => {
            write
                .write_all(format!("OK {}\n", bytes.len()).as_bytes())
                .await?;
            write.write_all(&bytes).await?;
        }
        None => write.write_all(b"NONE\n").await?,
    }
    write.shutdown().await
}

/// Fetches `peer`'s avatar; `None` when it has none.
pub async fn fetch(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
) -> Result<Option<Vec<u8>>, FetchError> {
    let ((mut reader, header), slot) =
        one_shot(control, outbound, peer, PROTOCOL, |stream| async {
            let mut reader = BufReader::new(stream.compat());
            let header = read_header(&mut reader).await?;
            Ok((reader, header))
        })
        .await?;
    if header == "NONE" {
        release_at_end(reader, slot);
        return Ok(None);
    }
    let size: u64 = header
        .strip_prefix("OK ")
        .and_then(|size| size.parse().ok())
        .filter(|size| *size <= MAX_AVATAR_BYTES)
        .ok_or_else(|| FetchError::Malformed(header.clone()))?;
    let mut image = Vec::with_capacity(size as usize);
    within_stall_limit((&mut reader).take(size).read_to_end(&mut image))
        .await
        .map_err(unreachable)?;
    if image.len() as u64 != size {
        return Err(FetchError::Malformed("the image was cut short".into()));
    }
    release_at_end(reader, slot);
    Ok(Some(image))
}
