//! A registry's access-log lines read as requests (method, path, status), for tests that assert
//! what a build did or did not do to a registry: whether it wrote anything, and which blobs it
//! uploaded (a blob upload ends with `PUT .../blobs/uploads/UUID?...digest=DIGEST`).

/// One access-log line: `127.0.0.1 - - [time] "METHOD TARGET HTTP/1.1" STATUS SIZE ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target: path and query, as sent (query values percent-encoded).
    pub target: String,
    pub status: u16,
}

impl Request {
    /// The request an access-log line records; `None` for other log lines.
    pub fn parse(line: &str) -> Option<Request> {
        let (_, quoted) = line.split_once('"')?;
        let (request, rest) = quoted.split_once(" HTTP/1.1\" ")?;
        let (method, target) = request.split_once(' ')?;
        let status = rest.split(' ').next()?.parse().ok()?;
        Some(Request {
            method: method.to_owned(),
            target: target.to_owned(),
            status,
        })
    }

    /// Whether the request changes the registry: any method but GET and HEAD.
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }

    /// The repository a `/v2/NAME/{blobs,manifests}/...` request is about.
    pub fn repository(&self) -> Option<&str> {
        let path = self.target.split('?').next()?.strip_prefix("/v2/")?;
        let end = ["/blobs/", "/manifests/"]
            .iter()
            .filter_map(|part| path.find(part))
            .min()?;
        Some(&path[..end])
    }

    /// The digest of the blob whose upload this request completed (a `PUT` of an upload session
    /// with its `digest` parameter); `None` for any other request.
    pub fn uploaded_digest(&self) -> Option<String> {
        if self.method != "PUT" || !self.target.contains("/blobs/uploads/") {
            return None;
        }
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("digest="))
            .map(|digest| digest.replace("%3A", ":").replace("%3a", ":"))
    }

    /// Whether the request carries blob data into an upload session (`PATCH`, or the `PUT`
    /// that ends one).
    pub fn sends_blob_data(&self) -> bool {
        self.target.contains("/blobs/uploads/") && matches!(self.method.as_str(), "PATCH" | "PUT")
    }

    /// Whether the request is a cross-repository mount (`POST .../blobs/uploads/?mount=...`).
    pub fn is_mount(&self) -> bool {
        self.method == "POST" && self.target.contains("mount=")
    }
}

/// The requests among `lines` (access-log lines; other lines are skipped).
pub fn requests(lines: &[String]) -> Vec<Request> {
    lines
        .iter()
        .filter_map(|line| Request::parse(line))
        .collect()
}

/// The upload sessions among `requests`: for each `PUT` that completed one, the digest it
/// uploaded, and every `PATCH` of the same session (matched by its upload UUID) alongside.
/// Data sent to a session that no `PUT` completed is returned under `None`.
pub fn uploads(requests: &[Request]) -> Vec<(Option<String>, Vec<Request>)> {
    let session = |request: &Request| -> Option<String> {
        let path = request.target.split('?').next()?;
        let (_, uuid) = path.split_once("/blobs/uploads/")?;
        (!uuid.is_empty()).then(|| uuid.to_owned())
    };
    let mut sessions: Vec<(Option<String>, Option<String>, Vec<Request>)> = Vec::new();
    for request in requests.iter().filter(|request| request.sends_blob_data()) {
        let uuid = session(request);
        let index = match sessions.iter().position(|(id, _, _)| *id == uuid) {
            Some(index) => index,
            None => {
                sessions.push((uuid, None, Vec::new()));
                sessions.len() - 1
            }
        };
        let entry = &mut sessions[index];
        if let Some(digest) = request.uploaded_digest() {
            entry.1 = Some(digest);
        }
        entry.2.push(request.clone());
    }
    sessions
        .into_iter()
        .map(|(_, digest, requests)| (digest, requests))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUT: &str = "127.0.0.1 - - [01/Dec/2026:19:54:00 +0000] \"PUT /v2/team/app/blobs/uploads/5f2a?_state=abc&digest=sha256%3A0123 HTTP/1.1\" 201 0 \"\" \"layerize\"";
    const PATCH: &str = "127.0.0.1 - - [01/Dec/2026:19:54:00 +0000] \"PATCH /v2/team/app/blobs/uploads/5f2a?_state=abc HTTP/1.1\" 202 0 \"\" \"layerize\"";
    const MOUNT: &str = "127.0.0.1 - - [01/Dec/2026:19:54:00 +0000] \"POST /v2/team/app/blobs/uploads/?mount=sha256%3A9&from=base HTTP/1.1\" 201 0 \"\" \"layerize\"";
    const HEAD: &str = "127.0.0.1 - - [01/Dec/2026:19:54:00 +0000] \"HEAD /v2/team/app/manifests/1 HTTP/1.1\" 404 0 \"\" \"layerize\"";

    #[test]
    fn reads_method_target_status_repository_and_uploaded_digest() {
        let put = Request::parse(PUT).unwrap();
        assert_eq!(put.method, "PUT");
        assert_eq!(put.status, 201);
        assert_eq!(put.repository(), Some("team/app"));
        assert_eq!(put.uploaded_digest().as_deref(), Some("sha256:0123"));
        assert!(put.is_write() && put.sends_blob_data() && !put.is_mount());
        let head = Request::parse(HEAD).unwrap();
        assert!(!head.is_write());
        assert_eq!(head.repository(), Some("team/app"));
        assert_eq!(head.uploaded_digest(), None);
        let mount = Request::parse(MOUNT).unwrap();
        assert!(mount.is_mount() && mount.is_write() && !mount.sends_blob_data());
        assert_eq!(
            Request::parse("time=... level=info msg=\"listening on\""),
            None
        );
    }

    #[test]
    fn groups_the_data_of_an_upload_session_under_its_digest() {
        let lines: Vec<String> = [PATCH, MOUNT, PUT, HEAD].map(String::from).to_vec();
        let uploads = uploads(&requests(&lines));
        assert_eq!(uploads.len(), 1);
        assert_eq!(uploads[0].0.as_deref(), Some("sha256:0123"));
        assert_eq!(uploads[0].1.len(), 2);
    }
}
