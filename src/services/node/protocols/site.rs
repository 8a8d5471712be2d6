//! `/goop/site/1.0.0`: one file of the peer's site per stream. The caller sends `GET <path>\n`;
//! the peer answers `OK <mime> <size>\n` and the bytes, or `ERR <reason>\n`.

use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use super::outbound::{Outbound, one_shot, release_at_end};
use super::{
    FetchError, REQUEST_LIMIT, REQUEST_TIMEOUT, lost, read_header, unreachable, within_stall_limit,
};
use crate::services::site::{MAX_FILE_BYTES, Site, SiteError};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/goop/site/1.0.0");

/// Buffer of file transfers, each way: large reads make large frames, far fewer trips through
/// Noise and Yamux.
const COPY_BUFFER: usize = 256 * 1024;

/// A site file fetched from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteReply {
    pub mime: String,
    pub body: Vec<u8>,
}

/// Why a peer would not send a site file: the reason of its `ERR <reason>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteRefusal {
    /// `forbidden`: the path is not shared (server-side code, dotfiles, outside the site).
    Forbidden,
    /// `not found` (also: the peer has no site).
    NotFound,
    /// `too large`: over [`MAX_FILE_BYTES`].
    TooLarge,
    /// `bad request`: the request was not one `GET <path>` line.
    BadRequest,
    /// Any other reason, as the peer gave it.
    Other(String),
}

impl SiteRefusal {
    /// The refusal an `ERR` line gives.
    pub fn parse(reason: &str) -> SiteRefusal {
        match reason {
            "forbidden" => SiteRefusal::Forbidden,
            "not found" => SiteRefusal::NotFound,
            "too large" => SiteRefusal::TooLarge,
            "bad request" => SiteRefusal::BadRequest,
            other => SiteRefusal::Other(other.to_owned()),
        }
    }

    /// The reason as the wire says it.
    pub fn reason(&self) -> &str {
        match self {
            SiteRefusal::Forbidden => "forbidden",
            SiteRefusal::NotFound => "not found",
            SiteRefusal::TooLarge => "too large",
            SiteRefusal::BadRequest => "bad request",
            SiteRefusal::Other(reason) => reason,
        }
    }
}

impl std::fmt::Display for SiteRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl From<SiteError> for SiteRefusal {
    fn from(error: SiteError) -> Self {
        match error {
            SiteError::Forbidden => SiteRefusal::Forbidden,
            SiteError::NotFound => SiteRefusal::NotFound,
            SiteError::TooLarge => SiteRefusal::TooLarge,
        }
    }
}

/// A refusal is equal to its reason as the wire says it.
impl PartialEq<&str> for SiteRefusal {
    fn eq(&self, reason: &&str) -> bool {
        self.reason() == *reason
    }
}

/// Answers one `GET` from `site` (or `ERR not found` without one).
pub(super) async fn serve(
    peer: PeerId,
    stream: libp2p::Stream,
    site: Option<Site>,
) -> std::io::Result<()> {
    let (read, write) = futures_util::AsyncReadExt::split(stream);
    let mut write = write.compat_write();
    let mut line = String::new();
    let mut reader = BufReader::new(read.compat().take(REQUEST_LIMIT));
    let read_line = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let path = match read_line {
        Ok(Ok(_)) if line.ends_with('\n') => {
            line.trim_end().strip_prefix("GET ").map(str::to_owned)
        }
        _ => None,
    };
    let refuse = |refusal: SiteRefusal| format!("ERR {refusal}\n");
    let Some(path) = path else {
        write
            .write_all(refuse(SiteRefusal::BadRequest).as_bytes())
            .await?;
        return write.shutdown().await;
    };
    let Some(site) = &site else {
        write
            .write_all(refuse(SiteRefusal::NotFound).as_bytes())
            .await?;
        return write.shutdown().await;
    };
    if let Some(made) = site.generate(Some(peer), &path).await {
        match made {
            Ok((mime, body)) => {
                within_stall_limit(
                    write.write_all(format!("OK {mime} {}\n", body.len()).as_bytes()),
                )
                .await?;
                within_stall_limit(write.write_all(&body)).await?;
            }
            Err(error) => write.write_all(refuse(error.into()).as_bytes()).await?,
        }
        return write.shutdown().await;
    }
    match site.resolve(&path) {
        Ok(file) => {
            let mut source = tokio::fs::File::open(&file.path).await?.take(file.size);
            let mut chunk = vec![0u8; COPY_BUFFER];
            let mut copied = 0u64;
            within_stall_limit(
                write.write_all(format!("OK {} {}\n", file.mime, file.size).as_bytes()),
            )
            .await?;
            loop {
                let read = source.read(&mut chunk).await?;
                if read == 0 {
                    break;
                }
                within_stall_limit(write.write_all(&chunk[..read])).await?;
                copied += read as u64;
            }
            tracing::debug!(peer.id = %peer, path, bytes = copied, "served a site file");
        }
        Err(error) => {
            write.write_all(refuse(error.into()).as_bytes()).await?;
        }
    }
    write.shutdown().await
}

/// Fetches `path` from `peer`'s site.
pub async fn fetch(
    control: &mut Control,
    outbound: &Outbound,
    peer: PeerId,
    path: &str,
) -> Result<SiteReply, FetchError> {
    if path.contains('\n') || path.len() as u64 > REQUEST_LIMIT - 5 {
        return Err(FetchError::Malformed(
            "the path is not a single short line".into(),
        ));
    }
    let request = format!("GET {path}\n");
    let ((mut reader, mime, size), slot) = one_shot(control, outbound, peer, PROTOCOL, |stream| {
        let request = request.clone();
        async move {
            let (read, write) = futures_util::AsyncReadExt::split(stream);
            let mut write = write.compat_write();
            write.write_all(request.as_bytes()).await.map_err(lost)?;
            write.flush().await.map_err(lost)?;
            let mut reader = BufReader::with_capacity(COPY_BUFFER, read.compat());
            let header = read_header(&mut reader).await?;
            if let Some(reason) = header.strip_prefix("ERR ") {
                return Err(FetchError::Refused(SiteRefusal::parse(reason)));
            }
            let mut parts = header.strip_prefix("OK ").unwrap_or("").split(' ');
            let (Some(mime), Some(size)) = (parts.next(), parts.next()) else {
                return Err(FetchError::Malformed(header));
            };
            let mime = mime.to_owned();
            let size: u64 = size
                .parse()
                .map_err(|_| FetchError::Malformed(header.clone()))?;
            Ok((reader, mime, size))
        }
    })
    .await?;
    if size > MAX_FILE_BYTES {
        return Err(FetchError::Malformed(format!(
            "{size} bytes is over the limit"
        )));
    }
    let mut body = Vec::with_capacity(size.min(1 << 20) as usize);
    let mut chunk = vec![0u8; COPY_BUFFER];
    while (body.len() as u64) < size {
        let wanted = (size - body.len() as u64).min(COPY_BUFFER as u64) as usize;
        let read = within_stall_limit(reader.read(&mut chunk[..wanted]))
            .await
            .map_err(unreachable)?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    if body.len() as u64 != size {
        return Err(FetchError::Malformed(format!(
            "announced {size} bytes, sent {}",
            body.len()
        )));
    }
    release_at_end(reader, slot);
    Ok(SiteReply { mime, body })
}
