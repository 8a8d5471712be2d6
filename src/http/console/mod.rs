//! The peer's browser console (`viewer.http_addr`): the peers this peer knows, their details,
//! their sites at `/p/<peerID>/…`, and the owner's pages. Access follows
//! [`crate::http::access`]: a session with `viewer.admin_password`, else loopback only.
//!
//! A remote peer's site is untrusted code. It is served under `/p/<peerID>/` with a CSP
//! `sandbox` (an opaque origin: no cookies, no storage of the console, no same-origin reads),
//! and the console refuses cross-site requests that are not plain navigations, so a hostile
//! site can neither read nor change anything of the console's.

mod chat;
mod data;
mod database;
mod edit;
mod groups;
mod logs;
mod lua;
mod mq;
mod notice;
mod peers;
mod settings;
mod site_live;
mod site_token;
mod sites;
mod templates;

pub use notice::Notices;
pub use site_token::SiteTokens;

use axum::Router;
use axum::extract::{FromRef, Request};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::http::access::{self, OwnerAccess};
use crate::http::client_ip::TrustedProxies;
use crate::http::csrf::CsrfSource;
use crate::http::error::HttpError;
use crate::http::session::AdminAuth;
use crate::identity::PeerId;
use crate::services::node::Node;
use crate::services::presence::cache::PeerBook;
use crate::services::presence::hub_client::{HubLink, HubStatus, Transport};
use crate::services::presence::peer_table::PeerTable;
use crate::services::site::Site;
use crate::services::site_files::SiteFiles;
use crate::telemetry::LogBuffer;

/// What console handlers share. Cloning is cheap.
#[derive(Clone)]
pub struct ConsoleApp {
    pub peer_id: PeerId,
    pub label: watch::Receiver<String>,
    pub node: Node,
    pub table: PeerTable,
    pub book: PeerBook,
    /// Direct and broadcast chat.
    pub chat: crate::services::chat::Chat,
    /// Groups hosted and joined.
    pub groups: crate::services::groups::Groups,
    /// Sites' own message topics (`app.*`).
    pub apps: crate::services::mq::apps::Apps,
    /// The names peers gave when asked who they are.
    pub identities: crate::services::mq::identity::Identities,
    /// The data API of this peer.
    pub data: crate::services::data::DataService,
    /// App templates: the gallery, applying one, export and import.
    pub templates: crate::services::sitetemplates::SiteTemplates,
    /// Tokens that let each peer site reach its own peer's data.
    pub site_tokens: SiteTokens,
    pub site: Site,
    /// The same site, for its owner's editor.
    pub site_files: SiteFiles,
    /// Where the Lua scripts are, relative to the site root (when they are inside it).
    pub lua_dir: Option<String>,
    pub logs: LogBuffer,
    pub access: OwnerAccess,
    pub proxies: TrustedProxies,
    pub stop: watch::Receiver<bool>,
    /// `goop.json` of the peer.
    pub config_path: std::path::PathBuf,
    /// The peer directory (where the avatar lives).
    pub dir: std::path::PathBuf,
    /// What settings change while the peer runs.
    pub live: LiveSettings,
    /// How the link to each hub this peer uses stands.
    pub hubs: Vec<watch::Receiver<HubStatus>>,
    /// Signs the notices forms redirect with.
    pub notices: Notices,
}

/// One hub as the console shows it.
pub struct HubRow {
    pub url: String,
    /// `connected`, `connecting` or `down`.
    pub state_class: &'static str,
    pub state_text: String,
    pub refused: Option<String>,
}

impl HubRow {
    fn from_status(status: &HubStatus, now_ms: i64) -> Self {
        let ago = |since_ms: i64| crate::http::text::ago(now_ms - since_ms);
        let (state_class, state_text) = match &status.link {
            HubLink::Connected {
                transport,
                since_ms,
            } => {
                let how = match transport {
                    Transport::WebSocket => "WebSocket",
                    Transport::EventStream => "event stream",
                };
                (
                    "connected",
                    format!("connected ({how}) since {}", ago(*since_ms)),
                )
            }
            HubLink::Connecting { since_ms } => {
                ("connecting", format!("connecting since {}", ago(*since_ms)))
            }
            HubLink::Down {
                reason,
                since_ms,
                retry_at_ms,
            } => (
                "down",
                format!(
                    "not connected since {}: {reason}; next try in {} s",
                    ago(*since_ms),
                    ((retry_at_ms - now_ms).max(0) + 999) / 1000
                ),
            ),
        };
        HubRow {
            url: status.url.clone(),
            state_class,
            state_text,
            refused: status.refused.clone(),
        }
    }
}

/// The parts of a running peer that settings update without a restart.
#[derive(Clone)]
pub struct LiveSettings {
    pub label: std::sync::Arc<watch::Sender<String>>,
    /// The owner's email, as stamped on the owner's rows.
    pub email: std::sync::Arc<watch::Sender<String>>,
    pub announcement:
        std::sync::Arc<watch::Sender<crate::services::presence::hub_client::Announcement>>,
}

/// What every console page shows around its content.
pub struct Frame {
    pub me: String,
    pub me_short: String,
    pub label: String,
    /// The CSRF token of the page's forms.
    pub csrf: String,
    /// Whether a password protects the console (a "sign out" button is shown).
    pub protected: bool,
    /// The configured theme, `dark` or `light` (`data-theme` on `<html>`).
    pub theme: &'static str,
}

impl ConsoleApp {
    /// The hubs this peer uses, as they stand now.
    pub fn hub_rows(&self) -> Vec<HubRow> {
        let now_ms = crate::services::hub::unix_ms();
        self.hubs
            .iter()
            .map(|status| HubRow::from_status(&status.borrow(), now_ms))
            .collect()
    }

    /// The page frame for a request.
    pub fn frame(&self, headers: &axum::http::HeaderMap) -> Frame {
        let me = self.peer_id.to_base58();
        Frame {
            me_short: crate::http::text::short_id(&me),
            me,
            label: self.label.borrow().clone(),
            csrf: self.access.csrf_for(headers).unwrap_or_default(),
            protected: self.access.auth.is_some(),
            theme: self.access.theme.as_str(),
        }
    }
}

impl CsrfSource for ConsoleApp {
    async fn csrf_for(&self, headers: &HeaderMap) -> Option<String> {
        self.access.csrf_for(headers)
    }
}

impl FromRef<ConsoleApp> for OwnerAccess {
    fn from_ref(app: &ConsoleApp) -> Self {
        app.access.clone()
    }
}

impl FromRef<ConsoleApp> for TrustedProxies {
    fn from_ref(app: &ConsoleApp) -> Self {
        app.proxies.clone()
    }
}

impl FromRef<ConsoleApp> for AdminAuth {
    fn from_ref(app: &ConsoleApp) -> Self {
        app.access.admin_auth()
    }
}

/// Every console route, behind the access rules and the cross-site rule.
pub fn router(app: ConsoleApp) -> Router {
    let guard = middleware::from_fn_with_state(app.access.clone(), access::guard);
    let local_only = middleware::from_fn_with_state(app.access.clone(), access::local_only);
    // The owner's pages and APIs: a session, and only the console's own pages may call them.
    let owner = Router::new()
        .merge(peers::routes())
        .merge(chat::routes())
        .merge(groups::routes())
        .merge(mq::routes())
        .merge(edit::routes())
        .merge(data::owner_routes())
        .merge(database::routes())
        .merge(lua::routes())
        .merge(templates::routes())
        .merge(sites::visit_routes())
        .merge(logs::routes())
        .merge(settings::routes())
        .route_layer(middleware::from_fn(refuse_cross_site))
        // Peer sites' files: the owner's to browse, loaded by sandboxed pages of no origin.
        .merge(sites::file_routes())
        .route_layer(guard);
    // Signing in and out: the console's own pages, before there is a session.
    let login =
        crate::http::owner_login::routes().route_layer(middleware::from_fn(refuse_cross_site));
    // What a sandboxed site may call (with its token) and anyone may load (the static files).
    let open = data::site_routes()
        .merge(site_live::routes())
        .merge(crate::http::assets::routes());
    Router::new()
        .merge(owner)
        .merge(login)
        .merge(open)
        .route_layer(local_only)
        .with_state(app)
}

/// Only the console's own pages may call the owner's routes: a request another origin started —
/// including a sandboxed peer site, whose origin is opaque — is refused unless it is a plain
/// navigation. (Sites' own files and what they call with their token are routed outside it.)
async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if !from_own_pages(request.headers(), request.method()) {
        return HttpError::new(
            StatusCode::FORBIDDEN,
            "the console answers only its own pages",
        )
        .for_caller(request.headers(), request.uri().path())
        .into_response();
    }
    next.run(request).await
}

/// True when the console's own pages started the request, or it is a plain navigation (a link
/// followed from elsewhere): any `Origin` is the console's own (the `Host` it was asked at), and
/// `Sec-Fetch-Site` (when the browser sends it) says `same-origin` or `none`. A sandboxed
/// site's `Origin` is `null`, so it never passes.
pub(super) fn from_own_pages(headers: &HeaderMap, method: &Method) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let same_origin = match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin
            .to_str()
            .ok()
            .and_then(|origin| origin.split_once("://"))
            .is_some_and(|(_, authority)| Some(authority) == text(header::HOST)),
    };
    let navigation = text(HeaderName::from_static("sec-fetch-mode")) == Some("navigate")
        && method == Method::GET;
    let same_site = matches!(
        text(HeaderName::from_static("sec-fetch-site")),
        None | Some("same-origin" | "none")
    );
    same_origin && (same_site || navigation)
}
