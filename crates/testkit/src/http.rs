//! What a test of a server's error answers checks: that each has the one JSON shape every
//! numport HTTP server answers with, `{"error": code, "message": text}`.

/// An error answer whose shape has been checked.
#[derive(Debug)]
pub struct ErrorAnswer {
    pub status: u16,
    /// The `error` code.
    pub code: String,
    /// The `Allow` header, which a 405 carries.
    pub allow: Option<String>,
}

/// Reads `resp` and panics unless it is an error (4xx or 5xx) of `Content-Type:
/// application/json` whose body is an object of exactly a non-empty `error` code and a
/// non-empty `message`.
pub async fn error_answer(resp: reqwest::Response) -> ErrorAnswer {
    let status = resp.status().as_u16();
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (content_type, allow) = (header(reqwest::header::CONTENT_TYPE), header(reqwest::header::ALLOW));
    let body = resp.bytes().await.expect("reading the answer");
    let text = String::from_utf8_lossy(&body);
    assert!((400..600).contains(&status), "not an error: {status} {text}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{status} {text}");
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {text}"));
    let object = value.as_object().unwrap_or_else(|| panic!("not an object: {text}"));
    let field = |name: &str| object.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_owned);
    let (Some(code), Some(_message)) = (field("error"), field("message")) else {
        panic!("no error code and message: {text}");
    };
    assert_eq!(object.len(), 2, "more than the error code and message: {text}");
    ErrorAnswer { status, code, allow }
}
