//! Notices after a form: "Saved.", "Row 5 deleted." — shown on the page a form redirects to.
//! The text travels in the redirect's query, so a link could make a console page say anything;
//! each notice therefore carries an HMAC with a key that lives only in this process, and a page
//! shows only notices this console wrote.

use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs and opens notices. Cloning is cheap.
#[derive(Clone)]
pub struct Notices {
    key: std::sync::Arc<[u8; 32]>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices {
            key: std::sync::Arc::new(rand::random()),
        }
    }
}

impl Notices {
    fn tag(&self, text: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(b"goop-notice:");
        mac.update(text.as_bytes());
        let bytes = mac.finalize().into_bytes();
        hex::encode(&bytes[..16])
    }

    /// `text` with its tag, as a page's `notice` parameter carries it.
    pub fn seal(&self, text: &str) -> String {
        format!("{}.{text}", self.tag(text))
    }

    /// A redirect to `path` (which may end in a `#fragment`) whose page shows `text`.
    pub fn redirect(&self, path: &str, text: &str) -> Response {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("notice", &self.seal(text))
            .finish();
        let (path, fragment) = match path.split_once('#') {
            Some((path, fragment)) => (path, format!("#{fragment}")),
            None => (path, String::new()),
        };
        Redirect::to(&format!("{path}?{query}{fragment}")).into_response()
    }

    /// The text of a notice this console wrote; anything else is not shown.
    pub fn open(&self, notice: Option<String>) -> Option<String> {
        let notice = notice?;
        let (tag, text) = notice.split_once('.')?;
        let expected = self.tag(text);
        let genuine: bool =
            subtle::ConstantTimeEq::ct_eq(tag.as_bytes(), expected.as_bytes()).into();
        genuine.then(|| text.to_owned())
    }
}
