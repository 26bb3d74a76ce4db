//! Sinks against real receivers on 127.0.0.1: a UDP and a TCP syslog receiver that parse
//! RFC 5424, an HTTP server that checks the webhook signature (of batches of entries and
//! of Slack messages) and can be told to fail, slow down or vanish, and JSONL files in
//! temporary directories.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_sinks::{
    AppendSignal, EntrySource, Facility, JsonlSink, KindFilter, MemorySource, RetryPolicy,
    RunnerConfig, Severity, Sink, SinkError, SinkRunner, SinkStatus, SinkTarget, SyslogConfig,
    SyslogProtocol, SyslogSink, WebhookConfig, WebhookFormat, WebhookSecret, WebhookSink,
    hmac_sha256, leaf_hash, validate_sinks, verify_webhook_signature,
};

const SECRET: &[u8] = b"0123456789abcdef-test-secret";
/// Generous: only reached when something is wrong.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The log, runners and waiting.

fn entry(index: u64) -> String {
    // Keys sorted and compact, as canonical JSON is.
    let kind = ["change.proposed", "change.verdict", "token.created"][(index % 3) as usize];
    format!(r#"{{"at":"2025-01-31T12:00:00Z","index_hint":{index},"kind":"{kind}"}}"#)
}

fn kind_of(index: u64) -> &'static str {
    ["change.proposed", "change.verdict", "token.created"][(index % 3) as usize]
}

struct Log {
    source: Arc<MemorySource>,
    signal: AppendSignal,
}

impl Log {
    fn new() -> Log {
        let signal = AppendSignal::new();
        Log {
            source: Arc::new(MemorySource::new(signal.clone())),
            signal,
        }
    }

    fn append_entries(&self, indices: std::ops::Range<u64>) {
        for index in indices {
            assert_eq!(self.source.append(entry(index).into_bytes()), index);
        }
    }

    fn start(&self, sink: Box<dyn Sink>, config: RunnerConfig) -> SinkRunner {
        let source: Arc<dyn EntrySource> = self.source.clone();
        SinkRunner::start(sink, source, self.signal.clone(), config).unwrap()
    }
}

/// Short waits everywhere: tests should take milliseconds, not the production seconds.
fn quick_config(directory: &Path, batch_size: usize) -> RunnerConfig {
    let mut config = RunnerConfig::new("test-sink", directory.join("test-sink.cursor"));
    config.batch_size = batch_size;
    config.poll_interval = Duration::from_millis(50);
    config.retry = RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    config
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_for_status(
    runner: &SinkRunner,
    what: &str,
    condition: impl Fn(&SinkStatus) -> bool,
) -> SinkStatus {
    let mut last = runner.status();
    wait_until(what, || {
        last = runner.status();
        condition(&last)
    });
    last
}

fn read_cursor(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

// ---------------------------------------------------------------------------------------
// RFC 5424 parsing, strict enough to catch a malformed message.

#[derive(Debug)]
struct SyslogMessage {
    priority: u16,
    version: u32,
    timestamp: String,
    hostname: String,
    app_name: String,
    process_id: String,
    message_id: String,
    sd_id: String,
    sd_params: BTreeMap<String, String>,
    message: Vec<u8>,
}

fn parse_rfc5424(bytes: &[u8]) -> Result<SyslogMessage, String> {
    let text_end = bytes
        .iter()
        .position(|&b| b == b'[')
        .ok_or("no structured data")?;
    let header = std::str::from_utf8(&bytes[..text_end]).map_err(|e| e.to_string())?;
    let rest = header.strip_prefix('<').ok_or("no PRI")?;
    let (priority, rest) = rest.split_once('>').ok_or("PRI not closed")?;
    if priority.is_empty() || priority.len() > 3 || !priority.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad PRI {priority:?}"));
    }
    let priority: u16 = priority.parse().map_err(|_| "PRI")?;
    if priority > 191 {
        return Err(format!("PRI {priority} out of range"));
    }
    let fields: Vec<&str> = rest.split(' ').collect();
    // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID and the empty string before '['.
    if fields.len() != 7 || !fields[6].is_empty() {
        return Err(format!("header fields {fields:?}"));
    }
    let limits = [
        (fields[2], 255),
        (fields[3], 48),
        (fields[4], 128),
        (fields[5], 32),
    ];
    for (field, max) in limits {
        if field.is_empty() || field.len() > max || !field.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("bad header field {field:?}"));
        }
    }
    let version: u32 = fields[0].parse().map_err(|_| "VERSION")?;
    check_timestamp(fields[1])?;

    let mut position = text_end + 1;
    let take_until = |position: &mut usize, stop: &[u8]| -> Result<String, String> {
        let start = *position;
        while *position < bytes.len() && !stop.contains(&bytes[*position]) {
            *position += 1;
        }
        if *position >= bytes.len() {
            return Err("structured data not closed".into());
        }
        Ok(String::from_utf8_lossy(&bytes[start..*position]).into_owned())
    };
    let sd_id = take_until(&mut position, b" ]")?;
    let mut sd_params = BTreeMap::new();
    while bytes[position] == b' ' {
        position += 1;
        let name = take_until(&mut position, b"=")?;
        position += 1;
        if bytes.get(position) != Some(&b'"') {
            return Err(format!("parameter {name} not quoted"));
        }
        position += 1;
        let mut value = Vec::new();
        loop {
            match bytes.get(position) {
                None => return Err("parameter value not closed".into()),
                Some(b'\\') => {
                    value.push(*bytes.get(position + 1).ok_or("dangling escape")?);
                    position += 2;
                }
                Some(b'"') => {
                    position += 1;
                    break;
                }
                Some(&byte) => {
                    value.push(byte);
                    position += 1;
                }
            }
        }
        sd_params.insert(name, String::from_utf8(value).map_err(|e| e.to_string())?);
    }
    if bytes.get(position) != Some(&b']') {
        return Err("structured data element not closed".into());
    }
    position += 1;
    let message = match &bytes[position..] {
        [] => Vec::new(),
        [b' ', message @ ..] => message.to_vec(),
        other => {
            return Err(format!(
                "no space before MSG: {:?}",
                String::from_utf8_lossy(other)
            ));
        }
    };
    Ok(SyslogMessage {
        priority,
        version,
        timestamp: fields[1].to_owned(),
        hostname: fields[2].to_owned(),
        app_name: fields[3].to_owned(),
        process_id: fields[4].to_owned(),
        message_id: fields[5].to_owned(),
        sd_id,
        sd_params,
        message,
    })
}

/// `YYYY-MM-DDThh:mm:ss[.1-6 digits]Z`, and close to now.
fn check_timestamp(timestamp: &str) -> Result<(), String> {
    let bytes = timestamp.as_bytes();
    let shape_ok = bytes.len() >= 20
        && bytes.len() <= 27
        && bytes
            .iter()
            .enumerate()
            .all(|(position, &byte)| match position {
                4 | 7 => byte == b'-',
                10 => byte == b'T',
                13 | 16 => byte == b':',
                19 => byte == b'.' || (byte == b'Z' && bytes.len() == 20),
                _ if position == bytes.len() - 1 => byte == b'Z',
                _ => byte.is_ascii_digit(),
            });
    if !shape_ok {
        return Err(format!("bad TIMESTAMP {timestamp:?}"));
    }
    let year: u64 = timestamp[..4].parse().map_err(|_| "year")?;
    let now_year = 1970
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952;
    if year.abs_diff(now_year) > 1 {
        return Err(format!("TIMESTAMP {timestamp} is not now"));
    }
    Ok(())
}

/// Checks every field airlock sets, for an entry delivered whole.
fn check_syslog_message(message: &SyslogMessage, index: u64, expected_priority: u16) {
    let expected_entry = entry(index);
    assert_eq!(message.priority, expected_priority);
    assert_eq!(message.version, 1);
    assert!(!message.timestamp.is_empty());
    assert_eq!(message.hostname, "gate-test");
    assert_eq!(message.app_name, "airlock");
    assert_eq!(message.process_id, std::process::id().to_string());
    assert_eq!(message.message_id, kind_of(index));
    assert_eq!(message.sd_id, "airlock@32473");
    assert_eq!(message.sd_params.get("index"), Some(&index.to_string()));
    assert_eq!(
        message.sd_params.get("leaf_hash"),
        Some(&hex::encode(leaf_hash(expected_entry.as_bytes())))
    );
    assert_eq!(message.sd_params.get("truncated"), None);
    assert_eq!(String::from_utf8_lossy(&message.message), expected_entry);
}

fn syslog_config(address: SocketAddr, protocol: SyslogProtocol) -> SyslogConfig {
    let mut config = SyslogConfig::new(address.to_string(), protocol);
    config.hostname = Some("gate-test".to_owned());
    config.timeout = Duration::from_secs(2);
    config
}

/// A TCP syslog receiver: reads octet-counted frames from each connection it accepts
/// and sends `(connection number, message bytes)`. `close_after` makes it hang up on
/// the first connection after that many messages.
fn tcp_syslog_receiver(
    listener: TcpListener,
    close_after: Option<usize>,
) -> mpsc::Receiver<(usize, Vec<u8>)> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for (connection, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let sender = sender.clone();
            let limit = if connection == 0 { close_after } else { None };
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut reader = BufReader::new(stream);
                let mut count = 0;
                while limit.is_none_or(|limit| count < limit) {
                    match read_octet_counted_frame(&mut reader) {
                        Ok(Some(frame)) => {
                            count += 1;
                            if sender.send((connection, frame)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(problem) => {
                            let _ = sender.send((
                                connection,
                                format!("FRAMING ERROR: {problem}").into_bytes(),
                            ));
                            return;
                        }
                    }
                }
                drop(reader);
                let _ = sender.send((connection, b"CLOSED".to_vec()));
            });
        }
    });
    receiver
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`, MSG-LEN = NONZERO-DIGIT *DIGIT.
fn read_octet_counted_frame(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, String> {
    let mut digits = Vec::new();
    reader
        .read_until(b' ', &mut digits)
        .map_err(|e| e.to_string())?;
    if digits.is_empty() {
        return Ok(None);
    }
    if digits.pop() != Some(b' ')
        || digits.is_empty()
        || digits[0] == b'0'
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return Err(format!("bad length {:?}", String::from_utf8_lossy(&digits)));
    }
    let length: usize = std::str::from_utf8(&digits)
        .unwrap()
        .parse()
        .map_err(|_| "length")?;
    let mut frame = vec![0; length];
    reader.read_exact(&mut frame).map_err(|e| e.to_string())?;
    Ok(Some(frame))
}

fn receive_frames(
    receiver: &mpsc::Receiver<(usize, Vec<u8>)>,
    count: usize,
) -> Vec<(usize, SyslogMessage)> {
    (0..count)
        .map(|_| {
            let (connection, frame) = receiver.recv_timeout(PATIENCE).expect("a syslog frame");
            let message = parse_rfc5424(&frame).unwrap_or_else(|problem| {
                panic!("{problem}: {:?}", String::from_utf8_lossy(&frame))
            });
            (connection, message)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 server for the webhook.

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
struct Request {
    at: Instant,
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
    /// The entries of an `{"entries":[…]}` body.
    indices: Vec<u64>,
    /// The text of a Slack `{"text":"…"}` body.
    text: Option<String>,
}

#[derive(Debug)]
struct ServerState {
    script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Request>,
    problems: Vec<String>,
    /// The log the entries come from; `None`: entries are `entry(index)`.
    log: Option<Arc<MemorySource>>,
}

struct WebhookReceiver {
    address: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    fn start() -> WebhookReceiver {
        WebhookReceiver::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Serves on a listener bound by the caller (bound before the thread starts, so no
    /// test waits for the server to come up).
    fn on(listener: TcpListener) -> WebhookReceiver {
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ServerState {
            script: VecDeque::new(),
            default: Reply::status(200),
            requests: Vec::new(),
            problems: Vec::new(),
            log: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let accept_thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { return };
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || serve_connection(stream, &state));
                }
            })
        };
        WebhookReceiver {
            address,
            state,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/audit", self.address)
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = reply;
    }

    /// Checks entries against `log` rather than against `entry(index)`.
    fn expect_log(&self, log: &Arc<MemorySource>) {
        self.state.lock().unwrap().log = Some(Arc::clone(log));
    }

    fn requests(&self) -> Vec<Request> {
        let state = self.state.lock().unwrap();
        assert!(
            state.problems.is_empty(),
            "receiver problems: {:?}",
            state.problems
        );
        state.requests.clone()
    }

    /// Indices of every request answered 2xx, in arrival order.
    fn accepted_indices(&self) -> Vec<u64> {
        self.requests()
            .iter()
            .filter(|request| (200..300).contains(&request.status))
            .flat_map(|request| request.indices.clone())
            .collect()
    }

    /// Texts of every Slack message answered 2xx, in arrival order.
    fn accepted_texts(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|request| (200..300).contains(&request.status))
            .map(|request| request.text.clone().expect("a Slack message"))
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_connection(stream: TcpStream, state: &Mutex<ServerState>) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let Some(length) = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        else {
            state
                .lock()
                .unwrap()
                .problems
                .push(format!("no Content-Length: {headers:?}"));
            return;
        };
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = {
            let mut state = state.lock().unwrap();
            let reply = state
                .script
                .pop_front()
                .unwrap_or_else(|| state.default.clone());
            match check_webhook_request(&request_line, &headers, &body, state.log.as_deref()) {
                Ok((indices, text)) => state.requests.push(Request {
                    at: Instant::now(),
                    status: reply.status,
                    content_type: headers.get("content-type").cloned(),
                    body: body.clone(),
                    indices,
                    text,
                }),
                Err(problem) => state.problems.push(problem),
            }
            reply
        };
        std::thread::sleep(reply.delay);
        let mut response = format!("HTTP/1.1 {} Test\r\nContent-Length: 2\r\n", reply.status);
        for (name, value) in &reply.headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\nok");
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// What a receiver must do: check the signature over the raw body and the timestamp's
/// freshness, then read the entries and check each against its leaf hash. A Slack
/// message (`{"text":"…"}` and nothing else) gives its text instead.
fn check_webhook_request(
    request_line: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    log: Option<&MemorySource>,
) -> Result<(Vec<u64>, Option<String>), String> {
    if !request_line.starts_with("POST /audit HTTP/1.1") {
        return Err(format!("unexpected request line {request_line:?}"));
    }
    let timestamp = headers
        .get("x-airlock-timestamp")
        .ok_or("no timestamp header")?;
    let signature = headers
        .get("x-airlock-signature")
        .ok_or("no signature header")?;
    // The documented scheme, written out independently of the sink's code.
    let expected = format!(
        "sha256={}",
        hex::encode(hmac_sha256(SECRET, &[timestamp.as_bytes(), b".", body]))
    );
    if *signature != expected {
        return Err(format!("signature {signature} is not {expected}"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if !verify_webhook_signature(SECRET, timestamp, signature, body, now, 300) {
        return Err("verify_webhook_signature disagrees".into());
    }
    let parsed: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let object = parsed.as_object().ok_or("the body is not an object")?;
    if object.contains_key("text") {
        return match (object.len(), &object["text"]) {
            (1, serde_json::Value::String(text)) => Ok((Vec::new(), Some(text.clone()))),
            _ => Err(format!("a Slack body has only a string text: {parsed}")),
        };
    }
    let entries = parsed["entries"].as_array().ok_or("no entries array")?;
    let mut indices = Vec::new();
    for item in entries {
        let index = item["index"].as_u64().ok_or("no index")?;
        let expected_entry = match log {
            None => entry(index),
            Some(log) => {
                let record = log.read(index, 1).map_err(|e| e.to_string())?;
                String::from_utf8(record.first().ok_or("no such entry")?.entry.to_vec())
                    .map_err(|e| e.to_string())?
            }
        };
        if item["entry"] != serde_json::from_str::<serde_json::Value>(&expected_entry).unwrap() {
            return Err(format!("entry {index} is {}", item["entry"]));
        }
        if item["leaf_hash"] != hex::encode(leaf_hash(expected_entry.as_bytes())) {
            return Err(format!("entry {index} has leaf hash {}", item["leaf_hash"]));
        }
        indices.push(index);
    }
    Ok((indices, None))
}

/// The `[[audit.sinks]]` tables of an airlock.toml text.
fn parse_sinks(text: &str) -> Result<Vec<airlock_sinks::SinkConfig>, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct File {
        audit: Audit,
    }
    #[derive(serde::Deserialize)]
    struct Audit {
        sinks: Vec<airlock_sinks::SinkConfig>,
    }
    Ok(toml::from_str::<File>(text)?.audit.sinks)
}

fn webhook_sink(url: String, timeout: Duration) -> Box<dyn Sink> {
    let mut config = WebhookConfig::new(url, WebhookSecret::new(SECRET));
    config.timeout = timeout;
    Box::new(WebhookSink::new(config))
}

fn unused_address() -> SocketAddr {
    // Bound and released: nothing listens there until the test binds it again.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn jsonl_indices(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            value["index"].as_u64().unwrap()
        })
        .collect()
}

fn expected_jsonl_line(index: u64) -> String {
    let entry = entry(index);
    format!(
        "{{\"index\":{index},\"leaf_hash\":\"{}\",\"entry\":{entry}}}\n",
        hex::encode(leaf_hash(entry.as_bytes()))
    )
}

// ---------------------------------------------------------------------------------------
// Syslog.

#[test]
fn syslog_udp_sends_one_rfc5424_message_per_datagram() {
    let directory = tempfile::tempdir().unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(PATIENCE)).unwrap();
    let log = Log::new();
    log.append_entries(0..4);
    let mut config = syslog_config(receiver.local_addr().unwrap(), SyslogProtocol::Udp);
    config.facility = Facility::from_name("local3").unwrap();
    config.severity = Severity::from_name("info").unwrap();
    let runner = log.start(
        Box::new(SyslogSink::new(config)),
        quick_config(directory.path(), 3),
    );

    let mut buffer = [0u8; 65_536];
    for index in 0..4 {
        let length = receiver.recv(&mut buffer).expect("a datagram");
        let message = parse_rfc5424(&buffer[..length]).unwrap();
        // local3 (19) * 8 + info (6).
        check_syslog_message(&message, index, 158);
    }
    let status = wait_for_status(&runner, "the cursor reaches 4", |status| status.cursor == 4);
    assert_eq!(
        (status.lag, status.consecutive_failures, status.last_error),
        (0, 0, None)
    );
    assert_eq!(
        read_cursor(&directory.path().join("test-sink.cursor")),
        "next_index=4\n"
    );
}

#[test]
fn syslog_udp_cuts_an_oversized_entry_and_marks_it() {
    let directory = tempfile::tempdir().unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(PATIENCE)).unwrap();
    let log = Log::new();
    let big = format!(
        r#"{{"kind":"change.proposed","diff":"{}"}}"#,
        "\u{e9}x".repeat(1500)
    );
    log.source.append(big.clone().into_bytes());
    log.source.append(entry(1).into_bytes());
    let mut config = syslog_config(receiver.local_addr().unwrap(), SyslogProtocol::Udp);
    config.max_datagram_bytes = 1024;
    let _runner = log.start(
        Box::new(SyslogSink::new(config)),
        quick_config(directory.path(), 10),
    );

    let mut buffer = [0u8; 65_536];
    let length = receiver.recv(&mut buffer).unwrap();
    assert!(length <= 1024, "{length}");
    let message = parse_rfc5424(&buffer[..length]).unwrap();
    assert_eq!(message.priority, 133, "local0.notice by default");
    assert_eq!(message.message_id, "change.proposed");
    assert_eq!(message.sd_params["index"], "0");
    assert_eq!(
        message.sd_params["leaf_hash"],
        hex::encode(leaf_hash(big.as_bytes()))
    );
    assert_eq!(message.sd_params["truncated"], big.len().to_string());
    let payload = String::from_utf8(message.message).expect("cut between characters");
    assert!(
        payload.len() > 400 && big.starts_with(&payload),
        "{payload}"
    );

    let length = receiver.recv(&mut buffer).unwrap();
    check_syslog_message(&parse_rfc5424(&buffer[..length]).unwrap(), 1, 133);
}

#[test]
fn syslog_tcp_frames_messages_with_octet_counting() {
    let directory = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let frames = tcp_syslog_receiver(listener, None);
    let log = Log::new();
    log.append_entries(0..5);
    // Multi-byte characters: the frame length counts bytes, not characters.
    log.source
        .append(r#"{"kind":"note","text":"été — ünïcödé"}"#.as_bytes());
    let runner = log.start(
        Box::new(SyslogSink::new(syslog_config(address, SyslogProtocol::Tcp))),
        quick_config(directory.path(), 2),
    );

    let received = receive_frames(&frames, 6);
    for (index, (connection, message)) in received.iter().enumerate().take(5) {
        assert_eq!(*connection, 0, "one connection for everything");
        check_syslog_message(message, index as u64, 133);
    }
    let last = &received[5].1;
    assert_eq!(last.message_id, "note");
    assert_eq!(
        String::from_utf8(last.message.clone()).unwrap(),
        r#"{"kind":"note","text":"été — ünïcödé"}"#
    );
    wait_for_status(&runner, "the cursor reaches 6", |status| status.cursor == 6);
}

#[test]
fn syslog_tcp_reconnects_when_the_receiver_hangs_up() {
    let directory = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // The first connection is closed by the receiver after two messages, as a
    // restarting collector would.
    let frames = tcp_syslog_receiver(listener, Some(2));
    let log = Log::new();
    log.append_entries(0..2);
    let runner = log.start(
        Box::new(SyslogSink::new(syslog_config(address, SyslogProtocol::Tcp))),
        quick_config(directory.path(), 2),
    );
    let first = receive_frames(&frames, 2);
    let (_, closed) = frames.recv_timeout(PATIENCE).unwrap();
    assert_eq!(closed, b"CLOSED");
    wait_for_status(&runner, "the first batch is delivered", |status| {
        status.cursor == 2
    });
    log.append_entries(2..5);
    let second = receive_frames(&frames, 3);

    let connections: Vec<usize> = first
        .iter()
        .chain(&second)
        .map(|(connection, _)| *connection)
        .collect();
    assert_eq!(connections, [0, 0, 1, 1, 1]);
    for (index, (_, message)) in first.iter().chain(&second).enumerate() {
        check_syslog_message(message, index as u64, 133);
    }
    wait_for_status(&runner, "the cursor reaches 5", |status| status.cursor == 5);
}

#[test]
fn syslog_tcp_receiver_down_then_up_gets_everything() {
    let directory = tempfile::tempdir().unwrap();
    let address = unused_address();
    let log = Log::new();
    log.append_entries(0..3);
    let runner = log.start(
        Box::new(SyslogSink::new(syslog_config(address, SyslogProtocol::Tcp))),
        quick_config(directory.path(), 10),
    );
    let status = wait_for_status(&runner, "two failed attempts", |status| {
        status.consecutive_failures >= 2
    });
    let error = status.last_error.unwrap();
    assert!(
        error.contains(&format!("syslog receiver {address}")),
        "{error}"
    );
    assert!(!status.last_error_permanent);
    assert_eq!((status.cursor, status.lag), (0, 3));

    let frames = tcp_syslog_receiver(TcpListener::bind(address).unwrap(), None);
    let received = receive_frames(&frames, 3);
    for (index, (_, message)) in received.iter().enumerate() {
        check_syslog_message(message, index as u64, 133);
    }
    let status = wait_for_status(&runner, "delivered", |status| status.cursor == 3);
    assert_eq!(status.consecutive_failures, 0);
}

// ---------------------------------------------------------------------------------------
// Webhook.

#[test]
fn webhook_posts_signed_batches() {
    let directory = tempfile::tempdir().unwrap();
    let server = WebhookReceiver::start();
    let log = Log::new();
    log.append_entries(0..5);
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_secs(5)),
        quick_config(directory.path(), 2),
    );
    wait_for_status(&runner, "the cursor reaches 5", |status| status.cursor == 5);

    let requests = server.requests();
    let batches: Vec<Vec<u64>> = requests
        .iter()
        .map(|request| request.indices.clone())
        .collect();
    assert_eq!(batches, [vec![0, 1], vec![2, 3], vec![4]]);
    assert_eq!(
        requests[0].content_type.as_deref(),
        Some("application/json")
    );
    let expected_body = format!(
        "{{\"entries\":[{},{}]}}",
        expected_jsonl_line(0).trim_end(),
        expected_jsonl_line(1).trim_end()
    );
    assert_eq!(
        String::from_utf8(requests[0].body.clone()).unwrap(),
        expected_body
    );
    assert_eq!(
        read_cursor(&directory.path().join("test-sink.cursor")),
        "next_index=5\n"
    );
}

#[test]
fn webhook_retries_503_and_429_with_backoff_then_delivers_once() {
    let directory = tempfile::tempdir().unwrap();
    let server = WebhookReceiver::start();
    let mut busy = Reply::status(429);
    busy.headers.push(("Retry-After".into(), "1".into()));
    server.script([Reply::status(503), Reply::status(503), busy]);
    let log = Log::new();
    log.append_entries(0..4);
    let mut config = quick_config(directory.path(), 10);
    config.retry = RetryPolicy {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(300),
    };
    let runner = log.start(webhook_sink(server.url(), Duration::from_secs(5)), config);
    let status = wait_for_status(&runner, "delivered", |status| status.cursor == 4);

    let requests = server.requests();
    let statuses: Vec<u16> = requests.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [503, 503, 429, 200]);
    assert!(
        requests
            .iter()
            .all(|request| request.indices == [0, 1, 2, 3]),
        "the same batch each time"
    );
    let gaps: Vec<Duration> = requests
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect();
    // Equal jitter waits at least half of 40 ms, then of 80 ms; the 429's Retry-After
    // of 1 s is honoured up to the 300 ms cap.
    assert!(gaps[0] >= Duration::from_millis(20), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(40), "{gaps:?}");
    assert!(
        gaps[2] >= Duration::from_millis(300) && gaps[2] < Duration::from_millis(900),
        "{gaps:?}"
    );
    assert_eq!(server.accepted_indices(), [0, 1, 2, 3]);
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.last_error.unwrap().contains("HTTP 429"));
    assert!(!status.last_error_permanent);
    assert_eq!(status.delivered_since_start, 4);
}

#[test]
fn webhook_refusal_is_reported_as_permanent_and_retried_at_the_cap() {
    let directory = tempfile::tempdir().unwrap();
    let server = WebhookReceiver::start();
    server.set_default(Reply::status(401));
    let log = Log::new();
    log.append_entries(0..2);
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_secs(5)),
        quick_config(directory.path(), 10),
    );
    let status = wait_for_status(&runner, "three refusals", |status| {
        status.consecutive_failures >= 3
    });
    let error = status.last_error.clone().unwrap();
    assert!(
        error.contains("HTTP 401") && error.contains(": ok"),
        "{error}"
    );
    assert!(status.last_error_permanent);
    assert_eq!((status.cursor, status.log_len, status.lag), (0, 2, 2));
    let requests = server.requests();
    // A permanent error waits between half the cap (100 ms) and the cap.
    for pair in requests.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(100));
    }

    server.set_default(Reply::status(204));
    let status = wait_for_status(&runner, "delivered once fixed", |status| status.cursor == 2);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(server.accepted_indices(), [0, 1]);
}

#[test]
fn webhook_dead_endpoint_keeps_retrying_without_touching_the_log_then_delivers_everything() {
    let directory = tempfile::tempdir().unwrap();
    let address = unused_address();
    let log = Log::new();
    let runner = log.start(
        webhook_sink(format!("http://{address}/audit"), Duration::from_secs(2)),
        quick_config(directory.path(), 4),
    );
    let started = Instant::now();
    log.append_entries(0..10);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "appends do not wait for the sink"
    );
    let status = wait_for_status(&runner, "three failed attempts", |status| {
        status.consecutive_failures >= 3
    });
    assert!(status.running);
    assert_eq!((status.cursor, status.log_len, status.lag), (0, 10, 10));
    let error = status.last_error.unwrap();
    assert!(
        error.contains(&format!("webhook http://{address}/audit")),
        "{error}"
    );
    assert!(!status.last_error_permanent);
    assert_eq!(log.source.len(), 10);
    assert!(
        !directory.path().join("test-sink.cursor").exists(),
        "nothing delivered, nothing stored"
    );

    let server = WebhookReceiver::on(TcpListener::bind(address).unwrap());
    log.append_entries(10..12);
    let status = wait_for_status(&runner, "everything delivered", |status| {
        status.cursor == 12
    });
    assert_eq!((status.lag, status.consecutive_failures), (0, 0));
    assert_eq!(server.accepted_indices(), (0..12).collect::<Vec<_>>());
}

#[test]
fn slow_receiver_builds_lag_but_never_slows_appends() {
    let directory = tempfile::tempdir().unwrap();
    let server = WebhookReceiver::start();
    let mut slow = Reply::status(200);
    slow.delay = Duration::from_millis(150);
    server.set_default(slow);
    let log = Log::new();
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_secs(5)),
        quick_config(directory.path(), 5),
    );
    let mut slowest_append = Duration::ZERO;
    for index in 0..30 {
        let started = Instant::now();
        log.append_entries(index..index + 1);
        slowest_append = slowest_append.max(started.elapsed());
    }
    // Half a delivery: an append that waited for the receiver would take a whole one.
    assert!(
        slowest_append < Duration::from_millis(75),
        "{slowest_append:?}"
    );
    let status = runner.status();
    assert!(status.lag > 0, "{status:?}");
    assert_eq!(status.log_len, 30);

    let status = wait_for_status(&runner, "caught up", |status| status.cursor == 30);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(server.accepted_indices(), (0..30).collect::<Vec<_>>());
    assert!(
        server
            .requests()
            .iter()
            .all(|request| request.indices.len() <= 5)
    );
}

#[test]
fn webhook_answer_lost_after_processing_repeats_only_that_batch() {
    let directory = tempfile::tempdir().unwrap();
    let server = WebhookReceiver::start();
    // The receiver takes the first batch but answers after the sink gave up waiting.
    let mut late = Reply::status(200);
    late.delay = Duration::from_millis(600);
    server.script([Reply::status(200), late]);
    let log = Log::new();
    log.append_entries(0..9);
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_millis(200)),
        quick_config(directory.path(), 3),
    );
    let status = wait_for_status(&runner, "delivered", |status| status.cursor == 9);
    assert!(status.last_error.unwrap().contains("webhook"));

    let accepted = server.accepted_indices();
    assert_eq!(
        accepted,
        [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8],
        "the timed-out batch again, nothing else"
    );
}

// ---------------------------------------------------------------------------------------
// Cursors and lifecycle.

#[test]
fn cursor_survives_a_restart_without_gaps_and_a_crash_repeats_one_batch_at_most() {
    let directory = tempfile::tempdir().unwrap();
    let cursor_path = directory.path().join("test-sink.cursor");
    let server = WebhookReceiver::start();
    let log = Log::new();
    log.append_entries(0..10);
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_secs(5)),
        quick_config(directory.path(), 4),
    );
    wait_for_status(&runner, "first run delivered", |status| status.cursor == 10);
    let final_status = runner.stop();
    assert!(!final_status.running);
    assert_eq!(read_cursor(&cursor_path), "next_index=10\n");

    // Appends go on while no runner runs; the next one resumes at the cursor.
    log.append_entries(10..20);
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_secs(5)),
        quick_config(directory.path(), 4),
    );
    wait_for_status(&runner, "second run delivered", |status| {
        status.cursor == 20
    });
    drop(runner);
    assert_eq!(
        server.accepted_indices(),
        (0..20).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );

    // A crash between a delivery and its cursor update leaves the cursor one batch
    // behind (the last batch was 16..20): only that batch comes again.
    std::fs::write(&cursor_path, "next_index=16\n").unwrap();
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_secs(5)),
        quick_config(directory.path(), 4),
    );
    wait_for_status(&runner, "third run delivered", |status| status.cursor == 20);
    let accepted = server.accepted_indices();
    assert_eq!(accepted[20..], [16, 17, 18, 19]);
}

#[test]
fn stop_is_prompt_during_a_long_backoff() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::new();
    log.append_entries(0..1);
    let mut config = quick_config(directory.path(), 10);
    config.retry = RetryPolicy {
        initial: Duration::from_secs(60),
        max: Duration::from_secs(600),
    };
    let runner = log.start(
        webhook_sink(
            format!("http://{}/audit", unused_address()),
            Duration::from_secs(2),
        ),
        config,
    );
    wait_for_status(&runner, "the first failure", |status| {
        status.consecutive_failures == 1
    });
    let started = Instant::now();
    let status = runner.stop();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(!status.running);
    assert_eq!(status.cursor, 0);
}

#[test]
fn a_corrupt_cursor_refuses_to_start_and_a_foreign_one_is_reported() {
    let directory = tempfile::tempdir().unwrap();
    let cursor_path = directory.path().join("test-sink.cursor");
    let log = Log::new();
    log.append_entries(0..3);
    let source: Arc<dyn EntrySource> = log.source.clone();

    std::fs::write(&cursor_path, "garbage").unwrap();
    let error = SinkRunner::start(
        Box::new(JsonlSink::new(directory.path().join("mirror.jsonl"))),
        Arc::clone(&source),
        log.signal.clone(),
        quick_config(directory.path(), 10),
    )
    .unwrap_err();
    assert!(matches!(error, SinkError::CursorCorrupt { .. }), "{error}");
    assert!(error.to_string().contains("test-sink.cursor"), "{error}");

    // A cursor past the end of this log belongs to another log: nothing is delivered.
    std::fs::write(&cursor_path, "next_index=100\n").unwrap();
    let runner = log.start(
        Box::new(JsonlSink::new(directory.path().join("mirror.jsonl"))),
        quick_config(directory.path(), 10),
    );
    let status = wait_for_status(&runner, "the error", |status| status.last_error.is_some());
    assert!(status.last_error.unwrap().contains("past the end"));
    assert!(status.last_error_permanent);
    assert!(!directory.path().join("mirror.jsonl").exists());
}

// ---------------------------------------------------------------------------------------
// JSONL mirror.

#[test]
fn jsonl_mirror_writes_one_line_per_entry_and_never_duplicates_after_a_lost_cursor() {
    let directory = tempfile::tempdir().unwrap();
    let mirror = directory.path().join("audit.jsonl");
    let cursor_path = directory.path().join("test-sink.cursor");
    let log = Log::new();
    log.append_entries(0..5);
    let runner = log.start(
        Box::new(JsonlSink::new(&mirror)),
        quick_config(directory.path(), 2),
    );
    wait_for_status(&runner, "mirrored", |status| status.cursor == 5);
    runner.stop();
    let expected: String = (0..5).map(expected_jsonl_line).collect();
    assert_eq!(std::fs::read_to_string(&mirror).unwrap(), expected);

    // As if airlock crashed before ever storing the cursor.
    std::fs::remove_file(&cursor_path).unwrap();
    log.append_entries(5..8);
    let runner = log.start(
        Box::new(JsonlSink::new(&mirror)),
        quick_config(directory.path(), 2),
    );
    wait_for_status(&runner, "mirrored again", |status| status.cursor == 8);
    assert_eq!(jsonl_indices(&mirror), (0..8).collect::<Vec<_>>());
}

#[test]
fn jsonl_mirror_cuts_a_torn_last_line() {
    let directory = tempfile::tempdir().unwrap();
    let mirror = directory.path().join("audit.jsonl");
    // A crash in the middle of writing line 3, with the cursor last stored at 2.
    let mut content: String = (0..3).map(expected_jsonl_line).collect();
    content.push_str(&expected_jsonl_line(3)[..40]);
    std::fs::write(&mirror, content).unwrap();
    std::fs::write(directory.path().join("test-sink.cursor"), "next_index=2\n").unwrap();

    let log = Log::new();
    log.append_entries(0..6);
    let runner = log.start(
        Box::new(JsonlSink::new(&mirror)),
        quick_config(directory.path(), 10),
    );
    wait_for_status(&runner, "mirrored", |status| status.cursor == 6);
    let expected: String = (0..6).map(expected_jsonl_line).collect();
    assert_eq!(std::fs::read_to_string(&mirror).unwrap(), expected);
}

#[test]
fn a_non_json_entry_is_refused_by_the_mirror_and_forwarded_by_syslog() {
    let directory = tempfile::tempdir().unwrap();
    let log = Log::new();
    log.append_entries(0..1);
    log.source.append(b"not json \xff".to_vec());
    log.source.append(entry(2).into_bytes());

    let mirror = directory.path().join("audit.jsonl");
    let jsonl = log.start(
        Box::new(JsonlSink::new(&mirror)),
        quick_config(directory.path(), 10),
    );
    let status = wait_for_status(&jsonl, "the refusal", |status| {
        status.consecutive_failures >= 1
    });
    assert_eq!(status.cursor, 1, "the entry before it is mirrored");
    assert!(status.last_error_permanent);
    assert!(
        status
            .last_error
            .unwrap()
            .contains("audit entry 1 is not a single-line JSON object")
    );
    assert!(status.running);
    assert_eq!(jsonl_indices(&mirror), [0]);

    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut syslog_runner_config = quick_config(directory.path(), 10);
    syslog_runner_config.name = "syslog".into();
    syslog_runner_config.cursor_path = directory.path().join("syslog.cursor");
    let syslog = log.start(
        Box::new(SyslogSink::new(syslog_config(
            receiver.local_addr().unwrap(),
            SyslogProtocol::Udp,
        ))),
        syslog_runner_config,
    );
    let mut buffer = [0u8; 65_536];
    let messages: Vec<SyslogMessage> = (0..3)
        .map(|_| {
            let length = receiver.recv(&mut buffer).unwrap();
            parse_rfc5424(&buffer[..length]).unwrap()
        })
        .collect();
    check_syslog_message(&messages[0], 0, 133);
    assert_eq!(messages[1].message_id, "-");
    assert_eq!(messages[1].message, b"not json \xff");
    check_syslog_message(&messages[2], 2, 133);
    wait_for_status(&syslog, "forwarded", |status| status.cursor == 3);
}

// ---------------------------------------------------------------------------------------
// Configuration to running sinks.

#[test]
fn sinks_start_from_their_configuration() {
    let directory = tempfile::tempdir().unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(PATIENCE)).unwrap();
    let mirror = directory.path().join("audit.jsonl");
    let text = format!(
        "[[audit.sinks]]\nname = \"mirror\"\nkind = \"jsonl\"\npath = {:?}\n\n\
         [[audit.sinks]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"{}\"\nprotocol = \"udp\"\n\
         hostname = \"gate-test\"\nfacility = \"auth\"\nseverity = \"warning\"\n",
        mirror.display().to_string(),
        receiver.local_addr().unwrap()
    );
    let specs = validate_sinks(&parse_sinks(&text).unwrap()).unwrap();
    let log = Log::new();
    log.append_entries(0..2);
    let cursors: PathBuf = directory.path().join("sinks");
    let source: Arc<dyn EntrySource> = log.source.clone();
    let runners: Vec<SinkRunner> = specs
        .iter()
        .map(|spec| {
            spec.start(Arc::clone(&source), log.signal.clone(), &cursors)
                .unwrap()
        })
        .collect();

    let mut buffer = [0u8; 65_536];
    for index in 0..2 {
        let length = receiver.recv(&mut buffer).unwrap();
        // auth (4) * 8 + warning (4).
        check_syslog_message(&parse_rfc5424(&buffer[..length]).unwrap(), index, 36);
    }
    for runner in &runners {
        wait_for_status(runner, "delivered", |status| status.cursor == 2);
    }
    assert_eq!(jsonl_indices(&mirror), [0, 1]);
    assert_eq!(
        read_cursor(&cursors.join("mirror.cursor")),
        "next_index=2\n"
    );
    assert_eq!(read_cursor(&cursors.join("siem.cursor")), "next_index=2\n");
}

// ---------------------------------------------------------------------------------------
// Kind filters and Slack notifications.

/// An entry of the shape airlock writes, on one line; `extra`'s keys (`details`,
/// `decision`, `approval`) are added at the top level.
fn audit_entry(
    kind: &str,
    change_id: &str,
    actor: (&str, &str),
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut entry = serde_json::json!({
        "v": 1,
        "kind": kind,
        "time": "2025-01-31T12:00:00.000Z",
        "actor": {"type": actor.0, "name": actor.1},
        "event_seq": 1,
        "change_id": change_id,
    });
    if let serde_json::Value::Object(fields) = extra {
        for (key, value) in fields {
            entry[key] = value;
        }
    }
    entry.to_string().into_bytes()
}

fn slack_sink(url: String) -> Box<dyn Sink> {
    let mut config = WebhookConfig::new(url, WebhookSecret::new(SECRET));
    config.timeout = Duration::from_secs(5);
    config.format = WebhookFormat::Slack;
    Box::new(WebhookSink::new(config))
}

fn with_kinds(mut config: RunnerConfig, patterns: &[&str]) -> RunnerConfig {
    config.kinds = Some(KindFilter::parse(patterns).unwrap());
    config
}

#[test]
fn a_kind_filter_delivers_only_matching_entries_in_order_and_the_cursor_reaches_the_end() {
    let directory = tempfile::tempdir().unwrap();
    let cursor_path = directory.path().join("test-sink.cursor");
    let server = WebhookReceiver::start();
    let log = Log::new();
    server.expect_log(&log.source);
    // Each round ends with entries no pattern takes, so the cursor has to pass them.
    let kinds = [
        "change.proposed",
        "review.requested",
        "checks.passed",
        "review.approved",
        "token.created",
        "change.break_glass",
        "post_review.opened",
        "post_review.overdue",
        "review.reminder",
        "token.revoked",
        "checks.failed",
        "config.loaded",
    ];
    let mut expected = Vec::new();
    for round in 0..3 {
        for kind in kinds {
            let index = log.source.append(audit_entry(
                kind,
                &format!("chg_{round}"),
                ("agent", "bot"),
                serde_json::Value::Null,
            ));
            let notification = airlock_sinks::NOTIFICATION_KINDS.contains(&kind);
            if notification || kind.starts_with("token.") {
                expected.push(index);
            }
        }
    }
    assert_eq!(expected.len(), 18);
    let config = with_kinds(
        quick_config(directory.path(), 3),
        &["notifications", "token.*"],
    );
    let runner = log.start(
        webhook_sink(server.url(), Duration::from_secs(5)),
        config.clone(),
    );
    let status = wait_for_status(&runner, "the cursor reaches the end", |status| {
        status.cursor == 36
    });
    assert_eq!(
        (
            status.lag,
            status.consecutive_failures,
            status.delivered_since_start
        ),
        (0, 0, 18)
    );
    assert_eq!(
        server.accepted_indices(),
        expected,
        "only matches, in order"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|request| !request.indices.is_empty() && request.indices.len() <= 3)
    );
    assert_eq!(read_cursor(&cursor_path), "next_index=36\n");

    // Entries no pattern takes move the cursor without a request.
    let requests_before = server.requests().len();
    for _ in 0..5 {
        log.source.append(audit_entry(
            "checks.passed",
            "chg_9",
            ("system", "worker"),
            serde_json::Value::Null,
        ));
    }
    wait_for_status(&runner, "the cursor passes them", |status| {
        status.cursor == 41
    });
    assert_eq!(server.requests().len(), requests_before);
    assert_eq!(read_cursor(&cursor_path), "next_index=41\n");

    // A restart resumes after them: the next match alone is delivered.
    runner.stop();
    let index = log.source.append(audit_entry(
        "review.expired",
        "chg_9",
        ("system", "timer"),
        serde_json::Value::Null,
    ));
    let runner = log.start(webhook_sink(server.url(), Duration::from_secs(5)), config);
    wait_for_status(&runner, "the last match", |status| status.cursor == 42);
    expected.push(index);
    assert_eq!(server.accepted_indices(), expected, "nothing twice");

    // The same filter from airlock.toml, on a JSONL mirror.
    let mirror = directory.path().join("notifications.jsonl");
    let text = format!(
        "[[audit.sinks]]\nname = \"mirror\"\nkind = \"jsonl\"\npath = {:?}\n\
         kinds = [\"notifications\", \"token.*\"]\nbatch_size = 4\n",
        mirror.display().to_string()
    );
    let specs = validate_sinks(&parse_sinks(&text).unwrap()).unwrap();
    let source: Arc<dyn EntrySource> = log.source.clone();
    let mirror_runner = specs[0]
        .start(source, log.signal.clone(), &directory.path().join("sinks"))
        .unwrap();
    wait_for_status(&mirror_runner, "mirrored", |status| status.cursor == 42);
    assert_eq!(jsonl_indices(&mirror), expected);
}

#[test]
fn slack_format_posts_one_signed_text_per_entry_with_agent_text_escaped() {
    let directory = tempfile::tempdir().unwrap();
    let server = WebhookReceiver::start();
    let log = Log::new();
    let null = serde_json::Value::Null;
    log.source.append(audit_entry(
        "change.proposed",
        "chg_01",
        ("agent", "bot"),
        serde_json::json!({"details": {"summary": "not a notification <!channel>"}}),
    ));
    log.source.append(audit_entry(
        "review.requested",
        "chg_01",
        ("agent", "bot"),
        serde_json::json!({"details": {
            "summary": "Fix <!channel> & see <http://evil.example|the docs>\n<@U0001>",
            "missing": ["1 from @payments", "1 more approval"],
        }}),
    ));
    log.source.append(audit_entry(
        "review.approved",
        "chg_01",
        ("human", "alice"),
        null.clone(),
    ));
    log.source.append(audit_entry(
        "review.rejected",
        "chg_01",
        ("human", "alice"),
        serde_json::json!({
            "decision": {"outcome": "rejected", "summary": "touches billing", "evidence_sha256": "00"},
            "details": {"reason": "needs a migration plan"},
        }),
    ));
    log.source.append(audit_entry(
        "change.break_glass",
        "chg_02",
        ("human", "ops"),
        serde_json::json!({"approval": {"method": "break_glass", "reason": "prod is down"}}),
    ));
    log.source.append(audit_entry(
        "post_review.overdue",
        "chg_02",
        ("system", "timer"),
        serde_json::json!({"details": {"summary": "x".repeat(10_000)}}),
    ));
    let runner = log.start(
        slack_sink(server.url()),
        with_kinds(quick_config(directory.path(), 10), &["notifications"]),
    );
    let status = wait_for_status(&runner, "delivered", |status| status.cursor == 6);
    assert_eq!(
        (status.delivered_since_start, status.consecutive_failures),
        (4, 0)
    );

    let texts = server.accepted_texts();
    assert_eq!(texts.len(), 4, "one message per entry: {texts:?}");
    assert_eq!(
        texts[..3],
        [
            "[airlock] review.requested chg_01 by agent bot: Fix &lt;!channel&gt; &amp; see \
             &lt;http://evil.example|the docs&gt; &lt;@U0001&gt;; \
             missing: 1 from @payments, 1 more approval",
            "[airlock] review.rejected chg_01 by human alice: touches billing; \
             reason: needs a migration plan",
            "[airlock] change.break_glass chg_02 by human ops: approval: break_glass \
             (prod is down)",
        ]
    );
    assert!(
        texts[3].starts_with("[airlock] post_review.overdue chg_02 by system timer: xxx"),
        "{}",
        texts[3]
    );
    assert!(texts[3].ends_with('…') && texts[3].chars().count() <= 3000);
    for text in &texts {
        assert!(!text.contains(['<', '>', '\n']), "{text}");
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    for request in &requests {
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert!(request.indices.is_empty());
    }
    // The signed bytes themselves hold no raw mention.
    let first_body = String::from_utf8(requests[0].body.clone()).unwrap();
    assert!(first_body.starts_with("{\"text\":\"[airlock] review.requested"));
    assert!(first_body.contains("&lt;!channel&gt;") && !first_body.contains("<!channel>"));
}

#[test]
fn slack_receiver_down_at_first_backs_off_without_slowing_appends_then_gets_everything() {
    let directory = tempfile::tempdir().unwrap();
    let address = unused_address();
    let log = Log::new();
    let mut expected_texts = Vec::new();
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for index in 0..1000u64 {
        entries.push(if index % 250 == 100 {
            expected_texts.push(format!(
                "[airlock] review.escalated chg_{index} by system timer: \
                 the review is overdue; missing: 1 from @security"
            ));
            audit_entry(
                "review.escalated",
                &format!("chg_{index}"),
                ("system", "timer"),
                serde_json::json!({"details": {
                    "summary": "the review is overdue",
                    "missing": ["1 from @security"],
                }}),
            )
        } else {
            audit_entry(
                "checks.step_finished",
                &format!("chg_{index}"),
                ("system", "worker"),
                serde_json::json!({"details": {"step": "test"}}),
            )
        });
    }
    let mut entries = entries.into_iter();
    // Before the runner starts, so that its reads (10 entries each) stop at index 100.
    for entry in entries.by_ref().take(150) {
        log.source.append(entry);
    }
    let runner = log.start(
        slack_sink(format!("http://{address}/audit")),
        with_kinds(quick_config(directory.path(), 10), &["notifications"]),
    );
    let status = wait_for_status(&runner, "the first failures", |status| {
        status.consecutive_failures >= 3
    });
    assert!(status.running && !status.last_error_permanent, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains(&format!("webhook http://{address}/audit")),
        "{status:?}"
    );
    assert_eq!(
        status.cursor, 100,
        "passed over what came before the first match"
    );

    // The producer goes on at full speed while the runner retries.
    let started = Instant::now();
    let mut slowest_append = Duration::ZERO;
    for entry in entries {
        let append_started = Instant::now();
        log.source.append(entry);
        slowest_append = slowest_append.max(append_started.elapsed());
    }
    let appending = started.elapsed();
    assert!(appending < Duration::from_secs(1), "{appending:?}");
    assert!(
        slowest_append < Duration::from_millis(50),
        "{slowest_append:?}"
    );
    assert_eq!(log.source.len(), 1000);

    // Backing off, not spinning: waits of at least half of 40 ms, 80 ms, then of the
    // 200 ms cap, so a few attempts in 600 ms, not thousands.
    let before = runner.status().consecutive_failures;
    std::thread::sleep(Duration::from_millis(600));
    let status = runner.status();
    let attempts = status.consecutive_failures - before;
    assert!(
        (1..=12).contains(&attempts),
        "{attempts} attempts in 600 ms"
    );
    assert_eq!((status.cursor, status.log_len), (100, 1000));
    assert_eq!(
        read_cursor(&directory.path().join("test-sink.cursor")),
        "next_index=100\n",
        "passing over entries is stored like a delivery"
    );

    let server = WebhookReceiver::on(TcpListener::bind(address).unwrap());
    let index = log.source.append(audit_entry(
        "review.requested",
        "chg_last",
        ("agent", "bot"),
        serde_json::json!({"details": {"summary": "needs 2 approvals"}}),
    ));
    expected_texts
        .push("[airlock] review.requested chg_last by agent bot: needs 2 approvals".to_owned());
    log.source.append(audit_entry(
        "checks.passed",
        "chg_last",
        ("system", "worker"),
        serde_json::Value::Null,
    ));
    let status = wait_for_status(&runner, "everything delivered", |status| {
        status.cursor == index + 2
    });
    assert_eq!((status.lag, status.consecutive_failures), (0, 0));
    assert_eq!(status.delivered_since_start, expected_texts.len() as u64);
    assert_eq!(
        server.accepted_texts(),
        expected_texts,
        "each once, in order"
    );
    assert_eq!(
        read_cursor(&directory.path().join("test-sink.cursor")),
        format!("next_index={}\n", index + 2)
    );
}

#[test]
fn config_errors_for_kinds_and_format_name_the_key_and_what_is_accepted() {
    let check = |text: &str, fragments: &[&str]| {
        let configs = parse_sinks(text).unwrap();
        let message = validate_sinks(&configs).unwrap_err().to_string();
        for fragment in fragments {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
    };
    let jsonl = "[[audit.sinks]]\nname = \"m\"\nkind = \"jsonl\"\npath = \"a.jsonl\"\n\
                 kinds = [\"notifications\"]\n";
    let syslog = "[[audit.sinks]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"h:514\"\n\
                  protocol = \"udp\"\n";
    let webhook = "[[audit.sinks]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://h/x\"\n\
                   secret_env = \"HOOK_SECRET\"\n";
    check(
        &format!("{jsonl}{syslog}kinds = [\"review.requested\", \"review*\"]\n"),
        &[
            "key `audit.sinks[1].kinds`",
            "`review*` is not a kind pattern",
            "\"review.requested\"",
            "\"review.*\"",
            "\"notifications\"",
            "review.escalated",
            "post_review.overdue",
        ],
    );
    check(
        &format!("{webhook}kinds = [\"*\"]\n"),
        &["key `audit.sinks[0].kinds`", "`*`", "\"review.*\""],
    );
    check(
        &format!("{webhook}format = \"teams\"\n"),
        &[
            "key `audit.sinks[0].format`",
            "`teams` is not a webhook format",
            "\"entries\"",
            "\"slack\"",
        ],
    );
    check(
        &format!("{syslog}format = \"slack\"\n"),
        &["key `audit.sinks[0].format`", "kind = \"syslog\"", "kinds"],
    );

    let specs = validate_sinks(
        &parse_sinks(&format!(
            "{webhook}format = \"slack\"\nkinds = [\"notifications\", \"deploy.*\"]\n"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        specs[0].target,
        SinkTarget::Webhook {
            format: WebhookFormat::Slack,
            ..
        }
    ));
    let kinds = specs[0].kinds.as_ref().unwrap();
    assert!(kinds.matches("review.requested") && kinds.matches("deploy.paused"));
    assert!(!kinds.matches("review.approved"));
}
