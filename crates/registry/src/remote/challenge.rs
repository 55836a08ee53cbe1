//! `WWW-Authenticate` challenges a registry answers with, reduced to the schemes layerize speaks.

use http_auth::ChallengeParser;

/// A challenge layerize can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm=..`: send the credentials on every request.
    Basic,
    /// `Bearer realm=..,service=..[,scope=..][,error=..]`: exchange credentials for a token.
    Bearer(BearerChallenge),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    /// Where tokens are issued.
    pub realm: String,
    pub service: Option<String>,
    /// Scopes the registry asks for; several may be space-separated in one parameter.
    pub scopes: Vec<String>,
    /// `insufficient_scope`, `invalid_token`, ...
    pub error: Option<String>,
}

impl Challenge {
    /// The challenge to answer among those in one header value, preferring Bearer over Basic.
    /// Unknown schemes and malformed values yield `None`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let mut basic = None;
        for parsed in ChallengeParser::new(header) {
            let Ok(challenge) = parsed else { break };
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.to_unescaped())
            };
            if challenge.scheme.eq_ignore_ascii_case("bearer") {
                let Some(realm) = param("realm") else {
                    continue;
                };
                return Some(Challenge::Bearer(BearerChallenge {
                    realm,
                    service: param("service"),
                    scopes: param("scope")
                        .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                    error: param("error"),
                }));
            }
            if challenge.scheme.eq_ignore_ascii_case("basic") {
                basic = Some(Challenge::Basic);
            }
        }
        basic
    }

    /// The first answerable challenge among several `WWW-Authenticate` header values.
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Challenge> {
        let mut found = None;
        for value in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
            let Ok(text) = value.to_str() else { continue };
            match Challenge::parse(text) {
                Some(bearer @ Challenge::Bearer(_)) => return Some(bearer),
                Some(Challenge::Basic) => found = Some(Challenge::Basic),
                None => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_distribution_bearer_challenge() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:app:pull,push""#,
        );
        assert_eq!(
            challenge,
            Some(Challenge::Bearer(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scopes: vec!["repository:app:pull,push".into()],
                error: None,
            }))
        );
    }

    #[test]
    fn splits_space_separated_scopes_and_reads_the_error() {
        let Some(Challenge::Bearer(bearer)) = Challenge::parse(
            r#"Bearer realm="https://a/t",service="s",scope="repository:app:pull,push repository:base:pull",error="insufficient_scope""#,
        ) else {
            panic!("not bearer")
        };
        assert_eq!(
            bearer.scopes,
            ["repository:app:pull,push", "repository:base:pull"]
        );
        assert_eq!(bearer.error.as_deref(), Some("insufficient_scope"));
    }

    #[test]
    fn scheme_names_are_case_insensitive_and_bearer_wins_over_basic() {
        assert_eq!(
            Challenge::parse(r#"basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        let both = Challenge::parse(r#"Basic realm="r", BEARER realm="https://a/t""#);
        assert!(
            matches!(both, Some(Challenge::Bearer(b)) if b.realm == "https://a/t" && b.service.is_none())
        );
    }

    #[test]
    fn unknown_or_broken_challenges_are_ignored() {
        assert_eq!(Challenge::parse(r#"Negotiate"#), None);
        assert_eq!(Challenge::parse(r#"Bearer service="no realm""#), None);
        assert_eq!(Challenge::parse("Bearer realm=\"unterminated"), None);
        assert_eq!(Challenge::parse(""), None);
    }

    #[test]
    fn picks_bearer_among_several_header_values() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.append("www-authenticate", r#"Basic realm="r""#.parse().unwrap());
        headers.append(
            "www-authenticate",
            r#"Bearer realm="https://a/t",service="s""#.parse().unwrap(),
        );
        assert!(matches!(
            Challenge::from_headers(&headers),
            Some(Challenge::Bearer(_))
        ));
    }
}
