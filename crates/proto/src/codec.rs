//! The two message encodings of the Mesos v1 HTTP APIs and how a request
//! picks one: `Content-Type` for the body it sends, `Accept` for the body it
//! wants back. This module owns media-type parsing and the encode/decode
//! dispatch; it does not send HTTP status codes (callers map `None` to 415 or
//! 406) and does not frame streams (see `recordio`).

use crate::json::{self, JsonError};

/// A message encoding of the v1 APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `application/json`, the Mesos JSON mapping.
    Json,
    /// `application/x-protobuf`, the binary protobuf encoding.
    Protobuf,
}

const JSON_MEDIA_TYPE: &str = "application/json";
const PROTOBUF_MEDIA_TYPE: &str = "application/x-protobuf";

/// Why a body could not be decoded in the chosen format.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The JSON body did not map onto the message.
    #[error("failed to parse JSON body: {0}")]
    Json(#[from] JsonError),
    /// The protobuf body is not a valid serialisation of the message.
    #[error("failed to parse protobuf body: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The protobuf body parses but leaves required fields unset.
    #[error("failed to parse protobuf body: Missing required fields: {0}")]
    ProtobufMissingRequired(String),
}

impl Format {
    /// The format named by a request's `Content-Type`. Mesos compares the
    /// header exactly; we also accept any letter case and parameters such as
    /// `; charset=utf-8`, which no client is hurt by.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        media_type_of(content_type).and_then(|media| match media.as_str() {
            JSON_MEDIA_TYPE => Some(Format::Json),
            PROTOBUF_MEDIA_TYPE => Some(Format::Protobuf),
            _ => None,
        })
    }

    /// The exact `Content-Type` of a response in this format; clients such as
    /// mesos-go reject anything else, parameters included.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => JSON_MEDIA_TYPE,
            Format::Protobuf => PROTOBUF_MEDIA_TYPE,
        }
    }

    /// The response format for a request's `Accept` header, or `None` when
    /// neither encoding is acceptable (406). An absent or empty header accepts
    /// everything, and JSON wins whenever it is acceptable, as in Mesos.
    /// Quality values only matter when they are zero, which excludes a type.
    pub fn negotiate_accept(accept: Option<&str>) -> Option<Format> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Some(Format::Json);
        };
        let mut protobuf = false;
        for range in accept.split(',') {
            let Some(media) = media_type_of(range) else {
                continue;
            };
            if has_zero_quality(range) {
                continue;
            }
            match media.as_str() {
                "*/*" | "application/*" | JSON_MEDIA_TYPE => return Some(Format::Json),
                PROTOBUF_MEDIA_TYPE => protobuf = true,
                _ => {}
            }
        }
        protobuf.then_some(Format::Protobuf)
    }

    /// Serialises `msg` in this format.
    pub fn encode<M: prost::Message + prost::Name>(self, msg: &M) -> Vec<u8> {
        match self {
            Format::Json => json::to_json(msg).into_bytes(),
            Format::Protobuf => msg.encode_to_vec(),
        }
    }

    /// Parses `body` in this format. Both formats reject unset `required`
    /// fields, as Mesos does; prost alone would fill them with defaults.
    pub fn decode<M: prost::Message + prost::Name + Default>(
        self,
        body: &[u8],
    ) -> Result<M, DecodeError> {
        match self {
            Format::Json => Ok(json::from_json(body)?),
            Format::Protobuf => {
                let msg = M::decode(body)?;
                let missing = json::missing_required_in_binary::<M>(body)?;
                if missing.is_empty() {
                    Ok(msg)
                } else {
                    Err(DecodeError::ProtobufMissingRequired(missing.join(", ")))
                }
            }
        }
    }
}

/// The lower-cased `type/subtype` of a media type or media range, without
/// parameters; `None` if it is empty.
fn media_type_of(value: &str) -> Option<String> {
    let media = value.split(';').next().unwrap_or_default().trim();
    (!media.is_empty()).then(|| media.to_ascii_lowercase())
}

/// Whether a media range carries `q=0` (in any spelling, such as `q=0.000`).
fn has_zero_quality(range: &str) -> bool {
    range.split(';').skip(1).any(|param| {
        let mut parts = param.splitn(2, '=');
        let name = parts.next().unwrap_or_default().trim();
        let value = parts.next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case("q") && value.parse::<f32>().is_ok_and(|q| q <= 0.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Call, call};
    use crate::v1::FrameworkInfo;

    #[test]
    fn content_types() {
        let table = [
            ("application/json", Some(Format::Json)),
            ("application/x-protobuf", Some(Format::Protobuf)),
            ("application/json; charset=utf-8", Some(Format::Json)),
            ("Application/JSON", Some(Format::Json)),
            (" application/x-protobuf ;charset=binary", Some(Format::Protobuf)),
            ("text/plain", None),
            ("application/recordio", None),
            ("", None),
            ("application/jsonx", None),
        ];
        for (header, expected) in table {
            assert_eq!(Format::from_content_type(header), expected, "{header:?}");
        }
    }

    #[test]
    fn media_types_are_exact() {
        assert_eq!(Format::Json.media_type(), "application/json");
        assert_eq!(Format::Protobuf.media_type(), "application/x-protobuf");
        for format in [Format::Json, Format::Protobuf] {
            assert_eq!(Format::from_content_type(format.media_type()), Some(format));
        }
    }

    #[test]
    fn accept_negotiation() {
        let table = [
            (None, Some(Format::Json)),
            (Some(""), Some(Format::Json)),
            (Some("*/*"), Some(Format::Json)),
            (Some("application/*"), Some(Format::Json)),
            (Some("application/json"), Some(Format::Json)),
            (Some("application/x-protobuf"), Some(Format::Protobuf)),
            (Some("application/x-protobuf, application/json"), Some(Format::Json)),
            (Some("application/json;q=0.1, application/x-protobuf"), Some(Format::Json)),
            (Some("application/json;q=0, application/x-protobuf"), Some(Format::Protobuf)),
            (Some("application/x-protobuf;q=0.5"), Some(Format::Protobuf)),
            (Some("application/x-protobuf;q=0"), None),
            (Some("text/html"), None),
            (Some("text/html, text/*"), None),
            (Some("text/html,*/*;q=0.8"), Some(Format::Json)),
            (Some("APPLICATION/X-PROTOBUF"), Some(Format::Protobuf)),
            (Some(" , ,"), None),
        ];
        for (header, expected) in table {
            assert_eq!(Format::negotiate_accept(header), expected, "{header:?}");
        }
    }

    fn sample_call() -> Call {
        Call {
            r#type: Some(call::Type::Subscribe as i32),
            subscribe: Some(call::Subscribe {
                framework_info: FrameworkInfo {
                    user: "alice".into(),
                    name: "demo".into(),
                    // Explicit, so that the JSON round trip is exact: JSON
                    // writes these defaults out and they come back set.
                    failover_timeout: Some(0.0),
                    checkpoint: Some(false),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn both_formats_round_trip() {
        let call = sample_call();
        for format in [Format::Json, Format::Protobuf] {
            let bytes = format.encode(&call);
            let back: Call = format.decode(&bytes).expect("round trip");
            assert_eq!(back, call, "{format:?}");
        }
    }

    #[test]
    fn decode_errors_say_what_failed() {
        let json = Format::Json.decode::<Call>(b"{").expect_err("truncated JSON");
        assert!(json.to_string().starts_with("failed to parse JSON body: invalid JSON"), "{json}");
        let proto = Format::Protobuf.decode::<Call>(&[0xff, 0xff]).expect_err("garbage");
        assert!(proto.to_string().starts_with("failed to parse protobuf body"), "{proto}");
        let missing = Format::Json
            .decode::<Call>(br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}"#)
            .expect_err("user missing");
        assert_eq!(
            missing.to_string(),
            "failed to parse JSON body: Missing required fields: subscribe.framework_info.user"
        );
    }

    #[test]
    fn protobuf_bodies_need_their_required_fields_too() {
        // Field 3 (`subscribe`) holding an empty message: no `framework_info`.
        let body = [0x1a, 0x00];
        let err = Format::Protobuf.decode::<Call>(&body).expect_err("framework_info missing");
        assert_eq!(
            err.to_string(),
            "failed to parse protobuf body: Missing required fields: subscribe.framework_info"
        );
        // Whereas the empty body is a valid Call: nothing at the top is required.
        assert_eq!(Format::Protobuf.decode::<Call>(&[]).ok(), Some(Call::default()));
    }
}
