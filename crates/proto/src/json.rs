//! The Mesos JSON mapping of protobuf messages (stout's, not proto3's
//! canonical mapping): proto field names as keys, enums by name, bytes as
//! base64, 64-bit integers as numbers, unset fields with an explicit default
//! written out, unknown keys ignored, required fields enforced. Conversions
//! go through `prost-reflect` and the descriptor set that `build.rs` embeds,
//! so any message of this crate works without per-type code. This module
//! does not choose between JSON and protobuf (see `codec`) or frame records
//! (see `recordio`).

mod read;
mod write;

use std::sync::LazyLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

/// The descriptor set of every `.proto` file of this crate, written by
/// `build.rs`.
const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fds.bin"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("build.rs writes a valid descriptor set that protox has already checked")
});

/// The reflection pool of every message in this crate, for callers that need
/// descriptors themselves (for example to list enum value names).
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// Why a JSON body could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The body is not JSON at all.
    #[error("invalid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// A message was expected but something else was found; an empty path is
    /// the top level.
    #[error("expected a JSON object for {}", describe_path(.path))]
    NotAnObject { path: String },
    /// A field's JSON type does not fit its protobuf type.
    #[error("field '{path}': expected {expected}")]
    WrongType { path: String, expected: &'static str },
    /// An integer field got a fraction or a non-numeric string.
    #[error("field '{path}': {value} is not an integer")]
    NotAnInteger { path: String, value: String },
    /// An integer field got a value outside its type's range.
    #[error("field '{path}': {value} is out of range for {kind}")]
    OutOfRange { path: String, value: String, kind: &'static str },
    /// A floating-point field got a string that is not a number.
    #[error("field '{path}': {value} is not a number")]
    InvalidNumber { path: String, value: String },
    /// A bytes field is not valid standard base64.
    #[error("field '{path}': invalid base64: {reason}")]
    InvalidBase64 { path: String, reason: String },
    /// A required enum field names a value the enum does not have.
    #[error("field '{path}': unknown enum value {value}")]
    UnknownEnumValue { path: String, value: String },
    /// A map key does not parse as the map's key type.
    #[error("field '{path}': invalid map key '{key}'")]
    InvalidMapKey { path: String, key: String },
    /// Messages nest deeper than the reader allows.
    #[error("messages nest deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// Required fields are unset; the comma-separated dotted paths follow
    /// stout's wording, which clients may show to users.
    #[error("Missing required fields: {0}")]
    MissingRequiredFields(String),
    /// The Rust type is not a message of this crate's descriptor set.
    #[error("no descriptor for message type '{0}'")]
    UnknownMessageType(String),
    /// The parsed message did not re-decode as the Rust type; a bug, kept as
    /// an error so that input can never crash a server.
    #[error("failed to convert the parsed message: {0}")]
    Convert(#[from] prost::DecodeError),
}

fn describe_path(path: &str) -> String {
    if path.is_empty() { "the message".to_owned() } else { format!("field '{path}'") }
}

fn descriptor_of<M: prost::Name>() -> Option<MessageDescriptor> {
    POOL.get_message_by_name(&M::full_name())
}

/// The Mesos JSON form of `msg`, as a `serde_json::Value`. Integral doubles
/// come out as integer numbers, so `0.0` compares equal to `json!(0)`.
///
/// # Panics
///
/// If `M` is not a message of this crate (the descriptor lookup fails), or
/// if `msg` nests more than 100 levels deep, which prost's own decoder
/// refuses and no decoded input can reach.
pub fn to_json_value<M: prost::Message + prost::Name>(msg: &M) -> serde_json::Value {
    let desc = descriptor_of::<M>().expect("to_json only serves messages of agora_proto");
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .expect("a message re-decodes with its own descriptor");
    write::message_to_value(&dynamic)
}

/// The Mesos JSON text of `msg`: one line, no spaces, ASCII only.
///
/// # Panics
///
/// As [`to_json_value`].
pub fn to_json<M: prost::Message + prost::Name>(msg: &M) -> String {
    write::value_to_ascii_string(&to_json_value(msg))
}

/// Parses Mesos JSON text into `M`. Never panics, whatever the input.
pub fn from_json<M: prost::Message + prost::Name + Default>(input: &[u8]) -> Result<M, JsonError> {
    let json: serde_json::Value = serde_json::from_slice(input)?;
    from_json_value(&json)
}

/// The dotted paths of the required fields a binary-encoded `M` leaves unset
/// (prost itself does not enforce `required`). Mesos rejects such bodies in
/// both encodings, so the protobuf path checks them too. A type outside this
/// crate's descriptor set has nothing to check.
pub(crate) fn missing_required_in_binary<M: prost::Name>(
    bytes: &[u8],
) -> Result<Vec<String>, prost::DecodeError> {
    let Some(desc) = descriptor_of::<M>() else {
        return Ok(Vec::new());
    };
    let dynamic = DynamicMessage::decode(desc, bytes)?;
    Ok(read::missing_required_fields(&dynamic))
}

/// Like [`from_json`], from an already parsed value.
pub fn from_json_value<M: prost::Message + prost::Name + Default>(
    json: &serde_json::Value,
) -> Result<M, JsonError> {
    let desc = descriptor_of::<M>().ok_or_else(|| JsonError::UnknownMessageType(M::full_name()))?;
    let dynamic = read::read_message(&desc, json, None, 0)?;
    let missing = read::missing_required_fields(&dynamic);
    if !missing.is_empty() {
        return Err(JsonError::MissingRequiredFields(missing.join(", ")));
    }
    Ok(M::decode(dynamic.encode_to_vec().as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor;
    use crate::internal::{AgentCall, agent_call};
    use crate::scheduler::{Call, Event, call, event};
    use crate::v1::{
        AgentInfo, CapabilityInfo, CommandInfo, ContainerId, FrameworkInfo, HealthCheck,
        MasterInfo, Resource, TaskInfo, TaskState, TaskStatus, Value, capability_info,
        command_info,
    };
    use serde_json::json;

    // The example bodies of the reference (section 1.2), verbatim.
    const SUBSCRIBE: &str = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"alice","name":"demo",
  "roles":["dev"],"failover_timeout":604800,"checkpoint":true,
  "capabilities":[{"type":"MULTI_ROLE"},{"type":"PARTITION_AWARE"}]}}}"#;

    const SUBSCRIBED: &str = r#"{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"9f1c...-0000"},
  "heartbeat_interval_seconds":15.0,"master_info":{"id":"9f1c...","ip":16777343,
  "port":5050,"pid":"master@127.0.0.1:5050","hostname":"m1","version":"1.11.0",
  "address":{"hostname":"m1","ip":"127.0.0.1","port":5050}}}}"#;

    const OFFERS: &str = r#"{"type":"OFFERS","offers":{"offers":[{"id":{"value":"9f1c...-O17"},
  "framework_id":{"value":"9f1c...-0000"},"agent_id":{"value":"9f1c...-S3"},
  "hostname":"agent7","allocation_info":{"role":"dev"},
  "url":{"scheme":"http","address":{"hostname":"agent7","ip":"10.0.0.7","port":5051},"path":"/slave(1)"},
  "resources":[
    {"name":"cpus","type":"SCALAR","scalar":{"value":4},"allocation_info":{"role":"dev"}},
    {"name":"mem","type":"SCALAR","scalar":{"value":7168},"allocation_info":{"role":"dev"}},
    {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},
     "allocation_info":{"role":"dev"}}],
  "attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}]}]}}"#;

    const ACCEPT: &str = r#"{"framework_id":{"value":"9f1c...-0000"},"type":"ACCEPT","accept":{
  "offer_ids":[{"value":"9f1c...-O17"}],
  "operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"hello",
    "task_id":{"value":"hello-1"},"agent_id":{"value":"9f1c...-S3"},
    "resources":[
      {"name":"cpus","type":"SCALAR","scalar":{"value":0.5},"allocation_info":{"role":"dev"}},
      {"name":"mem","type":"SCALAR","scalar":{"value":128},"allocation_info":{"role":"dev"}}],
    "command":{"shell":true,"value":"echo hi && sleep 30"}}]}}],
  "filters":{"refuse_seconds":5}}}"#;

    fn parse<M: prost::Message + prost::Name + Default>(text: &str) -> M {
        from_json(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn parse_err<M: prost::Message + prost::Name + Default + std::fmt::Debug>(
        text: &str,
    ) -> String {
        from_json::<M>(text.as_bytes()).expect_err(text).to_string()
    }

    /// `to_json` then `from_json` gives the message back, up to the unset
    /// fields with defaults, which JSON writes out and so come back set (as
    /// in Mesos). The JSON text itself is a fixed point.
    fn assert_round_trip<M>(msg: &M)
    where
        M: prost::Message + prost::Name + Default + PartialEq + std::fmt::Debug,
    {
        let text = to_json(msg);
        assert!(text.is_ascii() && !text.contains('\n'), "{text}");
        let back: M = from_json(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(to_json(&back), text);
        let again: M = from_json(to_json(&back).as_bytes()).expect("second round");
        assert_eq!(again, back, "{text}");
        assert_eq!(M::decode(back.encode_to_vec().as_slice()).ok().as_ref(), Some(&back));
    }

    /// Round trip of a message without unset defaulted fields: exact equality.
    fn assert_exact_round_trip<M>(msg: &M)
    where
        M: prost::Message + prost::Name + Default + PartialEq + std::fmt::Debug,
    {
        assert_round_trip(msg);
        let back: M = from_json(to_json(msg).as_bytes()).expect("round trip");
        assert_eq!(&back, msg);
    }

    #[test]
    fn golden_subscribe_call() {
        let call: Call = parse(SUBSCRIBE);
        assert_eq!(call.r#type(), call::Type::Subscribe);
        assert!(call.framework_id.is_none());
        let info = &call.subscribe.as_ref().expect("subscribe payload").framework_info;
        assert_eq!((info.user.as_str(), info.name.as_str()), ("alice", "demo"));
        assert_eq!(info.roles, ["dev"]);
        assert_eq!(info.failover_timeout, Some(604_800.0));
        assert_eq!(info.checkpoint, Some(true));
        let caps: Vec<_> = info.capabilities.iter().map(|c| c.r#type()).collect();
        use crate::v1::framework_info::capability::Type as Cap;
        assert_eq!(caps, [Cap::MultiRole, Cap::PartitionAware]);
        assert_round_trip(&call);
    }

    #[test]
    fn golden_subscribed_event() {
        let event: Event = parse(SUBSCRIBED);
        assert_eq!(event.r#type(), event::Type::Subscribed);
        let subscribed = event.subscribed.as_ref().expect("subscribed payload");
        assert_eq!(subscribed.framework_id.value, "9f1c...-0000");
        assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
        let master = subscribed.master_info.as_ref().expect("master_info");
        assert_eq!((master.ip, master.port), (16_777_343, 5050));
        assert_eq!(master.address.as_ref().map(|a| a.port), Some(5050));
        assert_round_trip(&event);
        let text = to_json(&event);
        assert!(text.contains(r#""heartbeat_interval_seconds":15"#), "{text}");
        assert!(text.contains(r#""ip":16777343"#), "{text}");
    }

    #[test]
    fn golden_offers_event() {
        let event: Event = parse(OFFERS);
        assert_eq!(event.r#type(), event::Type::Offers);
        let offers = &event.offers.as_ref().expect("offers payload").offers;
        assert_eq!(offers.len(), 1);
        let offer = &offers[0];
        assert_eq!(offer.id.value, "9f1c...-O17");
        assert_eq!(offer.hostname, "agent7");
        assert_eq!(offer.allocation_info.as_ref().and_then(|a| a.role.as_deref()), Some("dev"));
        let url = offer.url.as_ref().expect("url");
        assert_eq!((url.scheme.as_str(), url.address.port), ("http", 5051));
        assert_eq!(url.path.as_deref(), Some("/slave(1)"));
        let names: Vec<_> = offer.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["cpus", "mem", "ports"]);
        assert_eq!(offer.resources[0].scalar.as_ref().map(|s| s.value), Some(4.0));
        assert_eq!(offer.resources[2].r#type(), crate::v1::value::Type::Ranges);
        let range = &offer.resources[2].ranges.as_ref().expect("ranges").range[0];
        assert_eq!((range.begin, range.end), (31_000, 32_000));
        let rack = &offer.attributes[0];
        assert_eq!(rack.text.as_ref().map(|t| t.value.as_str()), Some("r1"));
        assert_round_trip(&event);
        // The doubled key that pymesos depends on.
        assert!(to_json_value(&event)["offers"]["offers"].is_array());
    }

    #[test]
    fn golden_accept_launch_call() {
        let call: Call = parse(ACCEPT);
        assert_eq!(call.r#type(), call::Type::Accept);
        assert_eq!(call.framework_id.as_ref().map(|f| f.value.as_str()), Some("9f1c...-0000"));
        let accept = call.accept.as_ref().expect("accept payload");
        assert_eq!(accept.offer_ids[0].value, "9f1c...-O17");
        assert_eq!(accept.filters.as_ref().and_then(|f| f.refuse_seconds), Some(5.0));
        let operation = &accept.operations[0];
        assert_eq!(operation.r#type(), crate::v1::offer::operation::Type::Launch);
        let task = &operation.launch.as_ref().expect("launch").task_infos[0];
        assert_eq!((task.name.as_str(), task.task_id.value.as_str()), ("hello", "hello-1"));
        let cpus = &task.resources[0];
        assert_eq!(
            (cpus.name.as_str(), cpus.scalar.as_ref().map(|s| s.value)),
            ("cpus", Some(0.5))
        );
        assert_eq!(task.resources[1].scalar.as_ref().map(|s| s.value), Some(128.0));
        let command = task.command.as_ref().expect("command");
        assert!(command.shell());
        assert_eq!(command.value.as_deref(), Some("echo hi && sleep 30"));
        assert_round_trip(&call);
    }

    #[test]
    fn golden_error_and_heartbeat_events() {
        let event: Event = parse(r#"{"type":"ERROR","error":{"message":"x"}}"#);
        assert_eq!(event.r#type(), event::Type::Error);
        assert_eq!(event.error.as_ref().map(|e| e.message.as_str()), Some("x"));
        assert_eq!(to_json_value(&event), json!({"type": "ERROR", "error": {"message": "x"}}));
        let heartbeat = Event { r#type: Some(event::Type::Heartbeat as i32), ..Default::default() };
        assert_eq!(to_json(&heartbeat), r#"{"type":"HEARTBEAT"}"#);
        assert_eq!(
            parse_err::<Event>(r#"{"type":"ERROR","error":{}}"#),
            "Missing required fields: error.message"
        );
    }

    #[test]
    fn executor_and_internal_messages_work_too() {
        let call: executor::Call = parse(
            r#"{"executor_id":{"value":"e"},"framework_id":{"value":"f"},"type":"UPDATE",
            "update":{"status":{"task_id":{"value":"t"},"state":"TASK_RUNNING",
            "source":"SOURCE_EXECUTOR","uuid":"AAECAwQFBgcICQoLDA0ODw=="}}}"#,
        );
        let status = &call.update.as_ref().expect("update").status;
        assert_eq!(status.state(), TaskState::TaskRunning);
        assert_eq!(status.uuid.as_deref(), Some(&(0u8..16).collect::<Vec<_>>()[..]));
        assert_round_trip(&call);
        assert_eq!(
            parse_err::<executor::Call>(r#"{"executor_id":{"value":"e"},"type":"HEARTBEAT"}"#),
            "Missing required fields: framework_id"
        );
        let register = AgentCall {
            r#type: Some(agent_call::Type::Register as i32),
            register: Some(agent_call::Register {
                agent_info: AgentInfo { hostname: "a1".into(), ..Default::default() },
                protocol_version: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_round_trip(&register);
        assert_eq!(to_json_value(&register)["register"]["agent_info"]["port"], json!(5051));
    }

    #[test]
    fn unset_fields_with_defaults_are_written() {
        let info = FrameworkInfo { user: "u".into(), name: "n".into(), ..Default::default() };
        let text = to_json(&info);
        assert!(text.contains(r#""failover_timeout":0"#), "{text}");
        assert!(text.contains(r#""checkpoint":false"#), "{text}");
        // `role` has a default but is deprecated, so it stays out.
        assert_eq!(
            to_json_value(&info),
            json!({"user": "u", "name": "n", "failover_timeout": 0, "checkpoint": false})
        );
        let command = CommandInfo { value: Some("true".into()), ..Default::default() };
        assert_eq!(to_json_value(&command), json!({"value": "true", "shell": true}));
        let uri = command_info::Uri { value: "http://x/y.tgz".into(), ..Default::default() };
        assert_eq!(to_json_value(&uri), json!({"value": "http://x/y.tgz", "extract": true}));
        let master = MasterInfo { id: "m".into(), ip: 1, port: 5050, ..Default::default() };
        assert_eq!(to_json_value(&master), json!({"id": "m", "ip": 1, "port": 5050}));
        let agent = AgentInfo { hostname: "h".into(), ..Default::default() };
        assert_eq!(to_json_value(&agent), json!({"hostname": "h", "port": 5051}));
        assert_eq!(
            to_json_value(&HealthCheck::default()),
            json!({"delay_seconds": 15, "interval_seconds": 10, "timeout_seconds": 20,
                   "consecutive_failures": 3, "grace_period_seconds": 10})
        );
        let resource = Resource { name: "cpus".into(), ..Default::default() };
        assert_eq!(to_json_value(&resource), json!({"name": "cpus", "type": "SCALAR"}));
        // An explicitly set value wins over the default, deprecated or not.
        let info: FrameworkInfo =
            parse(r#"{"user":"u","name":"n","role":"web","checkpoint":true}"#);
        let value = to_json_value(&info);
        assert_eq!((&value["role"], &value["checkpoint"]), (&json!("web"), &json!(true)));
    }

    #[test]
    fn scalars_are_spelled_like_mesos() {
        let status = TaskStatus {
            task_id: crate::v1::TaskId { value: "t".into() },
            state: TaskState::TaskFinished as i32,
            uuid: Some((0u8..16).collect::<Vec<_>>().into()),
            data: Some(bytes::Bytes::from_static(b"hi")),
            timestamp: Some(1_700_000_000.25),
            ..Default::default()
        };
        let value = to_json_value(&status);
        assert_eq!(value["uuid"], json!("AAECAwQFBgcICQoLDA0ODw=="));
        assert_eq!(value["data"], json!("aGk="));
        assert_eq!(value["state"], json!("TASK_FINISHED"));
        assert_eq!(value["timestamp"], json!(1_700_000_000.25));
        assert_exact_round_trip(&status);

        let range = crate::v1::value::Range { begin: 1, end: u64::MAX };
        let text = to_json(&range);
        assert!(text.contains(r#""end":18446744073709551615"#), "{text}");
        assert_exact_round_trip(&range);

        // An enum number the descriptor does not know is written as the number.
        let status = TaskStatus { state: 99, ..status };
        assert_eq!(to_json_value(&status)["state"], json!(99));
    }

    #[test]
    fn non_ascii_is_escaped() {
        let info = FrameworkInfo {
            user: "u".into(),
            name: "caf\u{e9} \u{1F680}".into(),
            ..Default::default()
        };
        let text = to_json(&info);
        assert!(text.is_ascii(), "{text}");
        assert!(text.contains(r#""name":"caf\u00e9 \ud83d\ude80""#), "{text}");
        assert_round_trip(&info);
    }

    #[test]
    fn unknown_keys_and_nulls_are_ignored() {
        let info: FrameworkInfo = parse(
            r#"{"user":"u","name":"n","bogus":{"deep":[1,2]},"hostname":null,
                "roles":null,"labels":null,"capabilities":[null,{"type":"MULTI_ROLE"}]}"#,
        );
        assert_eq!(info.hostname, None);
        assert!(info.roles.is_empty() && info.labels.is_none());
        assert_eq!(info.capabilities.len(), 1);
        // `null` on a required field counts as missing.
        assert_eq!(
            parse_err::<FrameworkInfo>(r#"{"user":null,"name":"n"}"#),
            "Missing required fields: user"
        );
    }

    #[test]
    fn missing_required_fields_are_named_by_path() {
        assert_eq!(
            parse_err::<Call>(
                r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}"#
            ),
            "Missing required fields: subscribe.framework_info.user"
        );
        assert_eq!(
            parse_err::<Call>(r#"{"type":"SUBSCRIBE","subscribe":{}}"#),
            "Missing required fields: subscribe.framework_info"
        );
        let no_name = ACCEPT.replace(r#""name":"hello","#, "");
        assert_eq!(
            parse_err::<Call>(&no_name),
            "Missing required fields: accept.operations[0].launch.task_infos[0].name"
        );
        let no_value = r#"{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},
            "limits":{"cpus":{},"mem":{"value":1}}}"#;
        assert_eq!(parse_err::<TaskInfo>(no_value), "Missing required fields: limits[cpus].value");
        assert_eq!(parse_err::<FrameworkInfo>("{}"), "Missing required fields: user, name");
    }

    #[test]
    fn unknown_enum_names() {
        // Optional: dropped.
        let call: Call = parse(r#"{"type":"NOT_A_TYPE"}"#);
        assert_eq!(call.r#type, None);
        // Repeated: the unknown element is dropped.
        let caps: CapabilityInfo = parse(r#"{"capabilities":["CHOWN","NOT_A_CAP","KILL"]}"#);
        use capability_info::Capability;
        assert_eq!(caps.capabilities, [Capability::Chown as i32, Capability::Kill as i32]);
        // Required: an error naming the field.
        let err = parse_err::<TaskStatus>(r#"{"task_id":{"value":"t"},"state":"TASK_NOPE"}"#);
        assert_eq!(err, r#"field 'state': unknown enum value "TASK_NOPE""#);
        // Numbers are accepted too.
        let status: TaskStatus = parse(r#"{"task_id":{"value":"t"},"state":1}"#);
        assert_eq!(status.state(), TaskState::TaskRunning);
    }

    #[test]
    fn numbers_in_strings_and_other_spellings() {
        let info: FrameworkInfo =
            parse(r#"{"user":"u","name":"n","failover_timeout":"10.5","checkpoint":true}"#);
        assert_eq!(info.failover_timeout, Some(10.5));
        let range: crate::v1::value::Range = parse(r#"{"begin":"31000","end":3.2e4}"#);
        assert_eq!((range.begin, range.end), (31_000, 32_000));
        let master: MasterInfo = parse(r#"{"id":"m","ip":"16777343","port":"5050"}"#);
        assert_eq!((master.ip, master.port), (16_777_343, 5050));
        let scalar: Value = parse(r#"{"type":"SCALAR","scalar":{"value":"-Infinity"}}"#);
        assert_eq!(scalar.scalar.map(|s| s.value), Some(f64::NEG_INFINITY));
        let nan: crate::v1::value::Scalar = parse(r#"{"value":"NaN"}"#);
        assert!(nan.value.is_nan());
        assert_eq!(to_json(&nan), r#"{"value":"NaN"}"#);
    }

    #[test]
    fn limits_map_with_infinity() {
        let task: TaskInfo = parse(
            r#"{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},
                "limits":{"cpus":{"value":"Infinity"},"mem":{"value":256}}}"#,
        );
        assert_eq!(task.limits["cpus"].value, f64::INFINITY);
        assert_eq!(task.limits["mem"].value, 256.0);
        let value = to_json_value(&task);
        assert_eq!(value["limits"], json!({"cpus": {"value": "Infinity"}, "mem": {"value": 256}}));
        assert_round_trip(&task);
    }

    #[test]
    fn type_errors_name_the_field() {
        let cases: [(&str, &str); 9] = [
            (r#"{"id":"m","ip":1.5,"port":1}"#, "field 'ip': 1.5 is not an integer"),
            (r#"{"id":"m","ip":"x","port":1}"#, r#"field 'ip': "x" is not an integer"#),
            (r#"{"id":"m","ip":-1,"port":1}"#, "field 'ip': -1 is out of range for uint32"),
            (
                r#"{"id":"m","ip":4294967296,"port":1}"#,
                "field 'ip': 4294967296 is out of range for uint32",
            ),
            (r#"{"id":"m","ip":true,"port":1}"#, "field 'ip': expected an integer"),
            (r#"{"id":7,"ip":1,"port":1}"#, "field 'id': expected a string"),
            (
                r#"{"id":"m","ip":1,"port":1,"capabilities":{"type":"AGENT_UPDATE"}}"#,
                "field 'capabilities': expected an array",
            ),
            (
                r#"{"id":"m","ip":1,"port":1,"address":[]}"#,
                "expected a JSON object for field 'address'",
            ),
            (
                r#"{"id":"m","ip":1,"port":1,"address":{"port":"9e99"}}"#,
                r#"field 'address.port': "9e99" is out of range for int32"#,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_err::<MasterInfo>(input), expected, "{input}");
        }
        assert_eq!(
            parse_err::<FrameworkInfo>(r#"{"user":"u","name":"n","checkpoint":"true"}"#),
            "field 'checkpoint': expected a boolean"
        );
        assert_eq!(
            parse_err::<FrameworkInfo>(r#"{"user":"u","name":"n","failover_timeout":"soon"}"#),
            r#"field 'failover_timeout': "soon" is not a number"#
        );
        assert_eq!(
            parse_err::<crate::v1::value::Range>(r#"{"begin":0,"end":-1}"#),
            "field 'end': -1 is out of range for uint64"
        );
    }

    #[test]
    fn base64_fields() {
        let status: TaskStatus =
            parse(r#"{"task_id":{"value":"t"},"state":"TASK_RUNNING","data":"aGk"}"#);
        assert_eq!(status.data.as_deref(), Some(&b"hi"[..]));
        let err = parse_err::<TaskStatus>(
            r#"{"task_id":{"value":"t"},"state":"TASK_RUNNING","uuid":"not base64!"}"#,
        );
        assert!(err.starts_with("field 'uuid': invalid base64"), "{err}");
    }

    #[test]
    fn top_level_must_be_an_object() {
        for input in ["[]", "3", "null", "\"x\"", "true"] {
            assert_eq!(
                parse_err::<Call>(input),
                "expected a JSON object for the message",
                "{input}"
            );
        }
        assert!(parse_err::<Call>("").starts_with("invalid JSON"));
        assert!(parse_err::<Call>("{\"type\":").starts_with("invalid JSON"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut text = String::from(r#"{"value":"c"}"#);
        for _ in 0..100 {
            text = format!(r#"{{"value":"c","parent":{text}}}"#);
        }
        assert_eq!(parse_err::<ContainerId>(&text), "messages nest deeper than 64 levels");
        let mut text = String::from(r#"{"value":"c"}"#);
        for _ in 0..30 {
            text = format!(r#"{{"value":"c","parent":{text}}}"#);
        }
        let id: ContainerId = parse(&text);
        assert_exact_round_trip(&id);
        let arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_err::<Call>(&arrays).starts_with("invalid JSON"));
        let objects = format!(r#"{}1{}"#, r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        assert!(parse_err::<Call>(&objects).starts_with("invalid JSON"));
    }

    #[test]
    fn generated_types_resolve_in_the_pool() {
        assert!(descriptor_of::<Call>().is_some());
        assert!(descriptor_of::<call::Reconcile>().is_some());
        assert!(descriptor_of::<crate::v1::offer::operation::Launch>().is_some());
        assert!(descriptor_of::<executor::Event>().is_some());
        assert!(descriptor_of::<crate::internal::AgentEvent>().is_some());
        let info =
            descriptor_pool().get_message_by_name("mesos.v1.FrameworkInfo").expect("FrameworkInfo");
        let role = info.get_field_by_name("role").expect("role field");
        assert!(write::is_deprecated(&role) && write::has_explicit_default(&role));
        let timeout = info.get_field_by_name("failover_timeout").expect("failover_timeout");
        assert!(!write::is_deprecated(&timeout) && write::has_explicit_default(&timeout));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = from_json::<Call>(&input);
            let _ = from_json::<Event>(&input);
        }

        #[test]
        fn arbitrary_json_never_panics(input in "[\\[\\]{}\":,0-9a-z_ .eE+-]{0,200}") {
            let _ = from_json::<Call>(input.as_bytes());
            let _ = from_json::<TaskInfo>(input.as_bytes());
        }

        #[test]
        fn strings_round_trip(name in "\\PC*", user in ".*") {
            let info = FrameworkInfo { user, name, ..Default::default() };
            let text = to_json(&info);
            proptest::prop_assert!(text.is_ascii());
            let back = from_json::<FrameworkInfo>(text.as_bytes());
            proptest::prop_assert_eq!(back.ok().map(|b| (b.user, b.name)), Some((info.user, info.name)));
        }
    }
}
