//! `goop.http.get/post`: outgoing HTTP for scripts, safe against server-side request forgery.
//!
//! A script may reach the public internet only. Every address a host name resolves to is vetted
//! (loopback, private, link-local, CGNAT, multicast, unspecified, documentation and other
//! non-global ranges are refused, also when wrapped in IPv6) and the connection goes to exactly
//! the vetted addresses: the client resolves names only through [`VettingResolver`], so a second,
//! different answer (DNS rebinding) can never be what it connects to. Addresses written into the
//! URL are vetted before the request and on every redirect. Proxies from the environment are
//! ignored (a proxy would connect on the script's behalf). An owner may open named private
//! networks with `lua.http_allow`.
//!
//! Each call may make [`MAX_REQUESTS`] requests of at most [`TIMEOUT`] (and never past the
//! call's own time budget); responses larger than [`MAX_RESPONSE_BYTES`] are refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use ipnet::IpNet;

/// Requests one call may make.
pub const MAX_REQUESTS: usize = 3;
/// Largest response body.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Largest request body.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Longest a request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// Headers a script may set on one request.
pub const MAX_HEADERS: usize = 32;

/// Turns a host name into addresses. The system resolver in production; tests bring their own.
pub trait HostResolver: Send + Sync + 'static {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver.
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Why an address may not be reached, or `None` when it is a public one.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        () if ip.is_unspecified() || a == 0 => "an unspecified address",
        () if ip.is_loopback() => "a loopback address",
        () if ip.is_private() => "a private address",
        () if ip.is_link_local() => "a link-local address",
        () if a == 100 && (64..128).contains(&b) => "a shared (CGNAT) address",
        () if ip.is_multicast() => "a multicast address",
        () if ip.is_broadcast() || a >= 240 => "a reserved address",
        () if ip.is_documentation() => "a documentation address",
        () if a == 198 && (b == 18 || b == 19) => "a benchmarking address",
        () if a == 192 && b == 0 && c == 0 => "a protocol-assignment address",
        () => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // Forms that carry an IPv4 address are judged by it: IPv4-mapped, IPv4-compatible, NAT64
    // and 6to4.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if segments[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return forbidden_v4(embedded(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return forbidden_v4(embedded(segments[1], segments[2]));
    }
    Some(match segments[0] {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        s if s & 0xfe00 == 0xfc00 => "a private (unique local) address",
        s if s & 0xffc0 == 0xfe80 => "a link-local address",
        s if s & 0xffc0 == 0xfec0 => "a site-local address",
        s if s & 0xff00 == 0xff00 => "a multicast address",
        0x2001 if segments[1] == 0x0db8 => "a documentation address",
        0x0100 if segments[1..4] == [0, 0, 0] => "a discard-only address",
        // 64:ff9b:1::/48, NAT64 for a local network.
        0x0064 if segments[1] == 0xff9b => "a local NAT64 address",
        // Teredo tunnels lead to hidden IPv4 hosts.
        0x2001 if segments[1] == 0 => "a tunnel (Teredo) address",
        _ => return None,
    })
}

/// What the owner let through and how names are resolved.
#[derive(Clone)]
pub struct HttpPolicy {
    /// Networks reachable even though they are not public (`lua.http_allow`).
    pub allow: Vec<IpNet>,
    pub resolver: Arc<dyn HostResolver>,
}

impl HttpPolicy {
    /// The system resolver with `allow` open.
    pub fn system(allow: Vec<IpNet>) -> HttpPolicy {
        HttpPolicy {
            allow,
            resolver: Arc::new(SystemResolver),
        }
    }

    /// Refuses `ip` unless it is public or the owner opened its network.
    pub fn vet(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        let canonical = ip.to_canonical();
        if self.allow.iter().any(|net| net.contains(&canonical)) {
            return Ok(());
        }
        match forbidden_kind(ip) {
            Some(kind) if host == ip.to_string() => Err(format!("refused: {ip} is {kind}")),
            Some(kind) => Err(format!("refused: {host} resolves to {ip}, {kind}")),
            None => Ok(()),
        }
    }

    /// Checks a URL before it is requested: scheme, and an address written into it.
    fn vet_url(&self, url: &url::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "refused: only http and https URLs may be fetched, not {}:",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("refused: URLs with credentials are not fetched".into());
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.vet(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.vet(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err("refused: the URL has no host".into()),
        }
    }
}

/// The client's only way to resolve names: every answer vetted, and only vetted addresses used.
struct VettingResolver {
    policy: HttpPolicy,
}

/// A refusal from the resolver, found again in the client's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = policy
                .resolver
                .lookup(host.clone())
                .await
                .map_err(|e| Refused(format!("cannot resolve {host}: {e}")))?;
            if ips.is_empty() {
                return Err(Refused(format!("{host} has no addresses")).into());
            }
            // One bad address refuses the name: which one a connection would use is not ours
            // to choose.
            for ip in &ips {
                policy.vet(&host, *ip).map_err(Refused)?;
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The HTTP client of one peer's scripts. Cloning is cheap.
#[derive(Clone)]
pub struct LuaHttp {
    client: reqwest::Client,
    policy: HttpPolicy,
}

/// A response as a script sees it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request a script asked for.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl LuaHttp {
    pub fn new(policy: HttpPolicy) -> Result<LuaHttp, String> {
        let redirect_policy = policy.clone();
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(VettingResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(Refused(format!(
                        "refused: more than {MAX_REDIRECTS} redirects"
                    )));
                }
                match redirect_policy.vet_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refusal) => {
                        let refusal = format!("{refusal} (redirected to {})", attempt.url());
                        attempt.error(Refused(refusal))
                    }
                }
            }))
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("goop2/", env!("CARGO_PKG_VERSION"), " (lua)"))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(LuaHttp { client, policy })
    }

    /// Sends one request, finished by `deadline` at the latest.
    pub async fn send(
        &self,
        request: HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, String> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| format!("not a URL ({e}): {}", request.url))?;
        self.policy.vet_url(&url)?;
        if request.headers.len() > MAX_HEADERS {
            return Err(format!("at most {MAX_HEADERS} headers may be set"));
        }
        if request
            .body
            .as_ref()
            .is_some_and(|b| b.len() > MAX_REQUEST_BYTES)
        {
            return Err(format!(
                "the request body is larger than {MAX_REQUEST_BYTES} bytes"
            ));
        }
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .min(TIMEOUT);
        if timeout.is_zero() {
            return Err("the call's time budget is used up".into());
        }
        let mut builder = self.client.request(request.method, url).timeout(timeout);
        for (name, value) in &request.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header `{name}` is not allowed"))?;
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        // The client's timeout runs from connecting until the body has been read.
        let failed = |error: reqwest::Error| match error.is_timeout() {
            true => format!("no answer within {} ms", timeout.as_millis()),
            false => describe(error),
        };
        let mut response = builder.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, body })
    }
}

fn too_large() -> String {
    format!("the response is larger than {MAX_RESPONSE_BYTES} bytes")
}

/// The clearest message in a client error: a refusal of ours if there is one.
fn describe(error: reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return refused.0.clone();
        }
        source = current.source();
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(current) = source {
        message.push_str(": ");
        message.push_str(&current.to_string());
        source = current.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_named() {
        let refused = [
            ("127.0.0.1", "loopback"),
            ("127.8.9.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("224.0.0.251", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("255.255.255.255", "reserved"),
            ("192.0.2.1", "documentation"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fd00::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("2001:db8::1", "documentation"),
            ("64:ff9b:1::a00:1", "NAT64"),
            ("2001:0:4136:e378::1", "Teredo"),
        ];
        for (ip, kind) in refused {
            let found = forbidden_kind(ip.parse().unwrap());
            assert!(
                found.is_some_and(|f| f.contains(kind)),
                "{ip}: {found:?}, expected {kind}"
            );
        }
        for ip in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(forbidden_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn an_allowed_network_opens_only_itself() {
        let policy = HttpPolicy::system(vec!["192.168.1.0/24".parse().unwrap()]);
        assert!(
            policy
                .vet("nas.lan", "192.168.1.20".parse().unwrap())
                .is_ok()
        );
        assert!(
            policy
                .vet("nas.lan", "::ffff:192.168.1.20".parse().unwrap())
                .is_ok()
        );
        let refusal = policy
            .vet("other.lan", "192.168.2.20".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            refusal,
            "refused: other.lan resolves to 192.168.2.20, a private address"
        );
    }
}
