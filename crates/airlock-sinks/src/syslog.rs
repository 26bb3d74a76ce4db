//! The syslog sink: one RFC 5424 message per entry, over UDP (RFC 5426, one message per
//! datagram) or TCP (RFC 6587, octet-counting framing).
//!
//! A message looks like
//! `<133>1 2025-01-31T12:00:00.123456Z host airlock 4242 change.proposed
//! [airlock@32473 index="17" leaf_hash="<hex>"] {"kind":"change.proposed",…}`:
//! PRI from the configured facility and severity, APP-NAME `airlock`, PROCID the
//! process id, MSGID the entry's `kind`, the index and leaf hash as structured data, and
//! the entry's bytes, unchanged, as MSG. The timestamp is when the message was sent; the
//! entry carries its own time.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::entry::kind_of;
use crate::{Sink, SinkError, SinkRecord};

/// The SD-ID of the structured data element. 32473 is the private enterprise number
/// IANA reserves for documentation (RFC 5612); airlock has none of its own.
pub const STRUCTURED_DATA_ID: &str = "airlock@32473";

/// The smallest `max_datagram_bytes` accepted: room for the longest possible header
/// and structured data (about 520 bytes with a 255-byte hostname) and some payload.
pub const MIN_DATAGRAM_BYTES: usize = 1024;

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM_BYTES: usize = 65_507;

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogProtocol {
    /// One message per datagram; size-limited; no acknowledgement: a datagram the
    /// network or a stopped receiver loses is lost. Use TCP for an audit trail.
    Udp,
    /// Octet-counted frames (`<length> <message>`) on one connection, reopened after
    /// a failure.
    Tcp,
}

/// Syslog facilities (RFC 5424, table 1), by their usual names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

const FACILITY_NAMES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl Facility {
    /// `local0`: the facility meant for site-defined applications.
    pub const LOCAL0: Facility = Facility(16);

    /// Parses a facility name (`local0` … `local7`, `daemon`, `auth`, `audit` …).
    pub fn from_name(name: &str) -> Option<Facility> {
        FACILITY_NAMES
            .iter()
            .position(|candidate| *candidate == name)
            .map(|code| Facility(code as u8))
    }

    /// Every accepted name, for error messages.
    pub fn names() -> &'static [&'static str] {
        &FACILITY_NAMES
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(FACILITY_NAMES[usize::from(self.0)])
    }
}

/// Syslog severities (RFC 5424, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Severity(u8);

const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl Severity {
    /// `notice`, "normal but significant condition": what an audit entry is.
    pub const NOTICE: Severity = Severity(5);

    /// Parses a severity name (`emerg`, `alert`, `crit`, `err`, `warning`, `notice`,
    /// `info`, `debug`).
    pub fn from_name(name: &str) -> Option<Severity> {
        SEVERITY_NAMES
            .iter()
            .position(|candidate| *candidate == name)
            .map(|code| Severity(code as u8))
    }

    /// Every accepted name, for error messages.
    pub fn names() -> &'static [&'static str] {
        &SEVERITY_NAMES
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(SEVERITY_NAMES[usize::from(self.0)])
    }
}

/// Where and how the syslog sink sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    /// `host:port`; resolved again at each reconnect, so a moved receiver is found.
    pub address: String,
    pub protocol: SyslogProtocol,
    pub facility: Facility,
    pub severity: Severity,
    /// The HOSTNAME field; `None` reads the machine's host name.
    pub hostname: Option<String>,
    /// UDP only: the largest datagram sent, kept within `MIN_DATAGRAM_BYTES` and
    /// `MAX_DATAGRAM_BYTES`. A longer message has its MSG cut (see `SyslogSink`).
    pub max_datagram_bytes: usize,
    /// Connect and write timeout.
    pub timeout: Duration,
}

impl SyslogConfig {
    /// Defaults: facility `local0`, severity `notice`, the machine's host name,
    /// datagrams of at most 2048 bytes (what RFC 5426 says every receiver should
    /// accept), a 10-second timeout.
    pub fn new(address: impl Into<String>, protocol: SyslogProtocol) -> SyslogConfig {
        SyslogConfig {
            address: address.into(),
            protocol,
            facility: Facility::LOCAL0,
            severity: Severity::NOTICE,
            hostname: None,
            max_datagram_bytes: 2048,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends each entry as one RFC 5424 message.
///
/// MSG is the entry's bytes, whatever they are (syslog's MSG may be any octets), and
/// without a BOM: receivers parse it as JSON, and a BOM breaks most JSON parsers.
///
/// Over UDP, a message longer than `max_datagram_bytes` is not dropped: its MSG is cut
/// at a UTF-8 character boundary so the datagram fits, and the structured data gains
/// `truncated="<entry length in bytes>"`. The index and leaf hash are always intact, so
/// a receiver can fetch the whole entry from the log and check it against the hash.
///
/// Over TCP a delivery succeeds once the kernel has taken the bytes. Syslog has no
/// acknowledgement, so a receiver that dies with unread data in its socket loses that
/// data; before each batch the sink checks whether the receiver closed the connection,
/// and reconnects if so, which covers a receiver restart.
#[derive(Debug)]
pub struct SyslogSink {
    config: SyslogConfig,
    hostname: String,
    process_id: String,
    connection: Option<Connection>,
}

#[derive(Debug)]
enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl SyslogSink {
    /// A sink for `config`. Connects on the first delivery, so a receiver that is down
    /// at startup is a failed delivery the runner retries.
    pub fn new(mut config: SyslogConfig) -> SyslogSink {
        config.max_datagram_bytes = config
            .max_datagram_bytes
            .clamp(MIN_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES);
        let hostname = match &config.hostname {
            Some(name) => header_field(name, 255),
            None => header_field(&machine_hostname(), 255),
        };
        SyslogSink {
            config,
            hostname,
            process_id: std::process::id().to_string(),
            connection: None,
        }
    }

    /// The message for `record`, sent at `now`. `max_len` limits the whole message
    /// (UDP); `None` means unlimited (TCP).
    fn format_message(
        &self,
        record: &SinkRecord,
        now: SystemTime,
        max_len: Option<usize>,
    ) -> Vec<u8> {
        let priority =
            u16::from(self.config.facility.code()) * 8 + u16::from(self.config.severity.code());
        let message_id =
            kind_of(record).map_or_else(|| "-".to_owned(), |kind| header_field(&kind, 32));
        let header = format!(
            "<{priority}>1 {} {} airlock {} {message_id} ",
            rfc3339_utc(now),
            self.hostname,
            self.process_id,
        );
        let structured_data = |truncated: Option<usize>| {
            let mut element = format!(
                "[{STRUCTURED_DATA_ID} index=\"{}\" leaf_hash=\"{}\"",
                record.index,
                hex::encode(record.leaf_hash)
            );
            if let Some(length) = truncated {
                element.push_str(&format!(" truncated=\"{length}\""));
            }
            element.push(']');
            element
        };
        let entry = &record.entry[..];
        let mut message = header.into_bytes();
        let whole = structured_data(None);
        let fits = |structured_data: &str, payload: usize| {
            let separator = usize::from(payload > 0);
            max_len.is_none_or(|max| {
                message.len() + structured_data.len() + separator + payload <= max
            })
        };
        let (structured_data, payload) = if fits(&whole, entry.len()) {
            (whole, entry)
        } else {
            let marked = structured_data(Some(entry.len()));
            let room = max_len
                .unwrap_or(usize::MAX)
                .saturating_sub(message.len() + marked.len() + 1);
            (marked, &entry[..utf8_boundary_at_or_below(entry, room)])
        };
        message.extend_from_slice(structured_data.as_bytes());
        if !payload.is_empty() {
            message.push(b' ');
            message.extend_from_slice(payload);
        }
        message
    }

    fn connect(&self) -> io::Result<Connection> {
        let addresses: Vec<SocketAddr> = self.config.address.to_socket_addrs()?.collect();
        let mut last_error =
            io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        for address in addresses {
            let attempt = match self.config.protocol {
                SyslogProtocol::Udp => connect_udp(address).map(Connection::Udp),
                SyslogProtocol::Tcp => {
                    connect_tcp(address, self.config.timeout).map(Connection::Tcp)
                }
            };
            match attempt {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn send(&mut self, batch: &[SinkRecord]) -> io::Result<()> {
        if let Some(Connection::Tcp(stream)) = &self.connection
            && !peer_still_open(stream)
        {
            self.connection = None;
        }
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let now = SystemTime::now();
        match &connection {
            Connection::Udp(socket) => {
                for record in batch {
                    let message =
                        self.format_message(record, now, Some(self.config.max_datagram_bytes));
                    socket.send(&message)?;
                }
            }
            Connection::Tcp(stream) => {
                // One write per batch: frames are `<octet count> <message>`.
                let mut frames = Vec::new();
                for record in batch {
                    let message = self.format_message(record, now, None);
                    frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    frames.extend_from_slice(&message);
                }
                let mut stream = stream;
                stream.write_all(&frames)?;
                stream.flush()?;
            }
        }
        // Kept only after a clean send: any error above drops the connection, and the
        // retry starts on a new one.
        self.connection = Some(connection);
        Ok(())
    }
}

impl Sink for SyslogSink {
    fn deliver(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        self.send(batch).map_err(|source| SinkError::SyslogIo {
            address: self.config.address.clone(),
            source,
        })
    }
}

fn connect_udp(address: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if address.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    // Connected, so the kernel reports an unreachable port (ICMP) on a later send.
    socket.connect(address)?;
    Ok(socket)
}

fn connect_tcp(address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// False when the receiver has closed the connection (or it failed). A syslog receiver
/// never sends, so a readable end of stream is the only news it can give.
fn peer_still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut probe = [0u8; 256];
    let open = match (&*stream).read(&mut probe) {
        Ok(0) => false,
        Ok(_) => true,
        Err(error) => error.kind() == io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_ok() && open
}

/// A header field (HOSTNAME, MSGID): printable US-ASCII without spaces, at most
/// `max_len` characters; anything else becomes `_`, and an empty field `-` (NILVALUE).
fn header_field(value: &str, max_len: usize) -> String {
    let field: String = value
        .chars()
        .take(max_len)
        .map(|character| {
            if character.is_ascii_graphic() {
                character
            } else {
                '_'
            }
        })
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

fn machine_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_default()
}

/// The longest prefix of `bytes` of at most `max_len` bytes that does not split a UTF-8
/// character. Bytes that are not UTF-8 are cut anywhere.
fn utf8_boundary_at_or_below(bytes: &[u8], max_len: usize) -> usize {
    if max_len >= bytes.len() {
        return bytes.len();
    }
    let mut end = max_len;
    // Continuation bytes are 0b10xxxxxx; a character starts at most 3 bytes back.
    while end > 0 && max_len - end < 3 && bytes[end] & 0b1100_0000 == 0b1000_0000 {
        end -= 1;
    }
    if bytes[end] & 0b1100_0000 == 0b1000_0000 {
        max_len
    } else {
        end
    }
}

/// `YYYY-MM-DDThh:mm:ss.ffffffZ`, the RFC 5424 TIMESTAMP (microseconds at most).
fn rfc3339_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::leaf_hash;

    fn record(index: u64, entry: &str) -> SinkRecord {
        SinkRecord {
            index,
            leaf_hash: leaf_hash(entry.as_bytes()),
            entry: entry.as_bytes().into(),
        }
    }

    fn sink() -> SyslogSink {
        let mut config = SyslogConfig::new("127.0.0.1:514", SyslogProtocol::Udp);
        config.hostname = Some("gate-1".to_owned());
        SyslogSink::new(config)
    }

    const NOON: Duration = Duration::from_micros(1_738_324_800_123_456);

    #[test]
    fn timestamps() {
        let check = |seconds: u64, expected: &str| {
            assert_eq!(
                rfc3339_utc(UNIX_EPOCH + Duration::from_secs(seconds)),
                expected
            );
        };
        check(0, "1970-01-01T00:00:00.000000Z");
        check(951_782_400, "2000-02-29T00:00:00.000000Z");
        check(1_738_367_999, "2025-01-31T23:59:59.000000Z");
        check(4_107_542_400, "2100-03-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + NOON),
            "2025-01-31T12:00:00.123456Z"
        );
    }

    #[test]
    fn message_layout() {
        let record = record(17, r#"{"kind":"change.proposed","x":1}"#);
        let message = sink().format_message(&record, UNIX_EPOCH + NOON, None);
        let expected = format!(
            "<133>1 2025-01-31T12:00:00.123456Z gate-1 airlock {} change.proposed \
             [airlock@32473 index=\"17\" leaf_hash=\"{}\"] {{\"kind\":\"change.proposed\",\"x\":1}}",
            std::process::id(),
            hex::encode(record.leaf_hash)
        );
        assert_eq!(String::from_utf8(message).unwrap(), expected);
    }

    #[test]
    fn message_ids_and_hostnames_are_made_printable() {
        assert_eq!(
            header_field("change proposed\u{e9}", 32),
            "change_proposed_"
        );
        assert_eq!(header_field(&"k".repeat(40), 32), "k".repeat(32));
        assert_eq!(header_field("", 32), "-");
        let message = sink().format_message(&record(0, "not json"), UNIX_EPOCH, None);
        let text = String::from_utf8(message).unwrap();
        assert!(
            text.contains(" airlock ") && text.ends_with("] not json"),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} - [", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn oversized_messages_are_cut_at_a_character_and_marked() {
        let entry = format!(r#"{{"kind":"k","text":"{}"}}"#, "\u{e9}".repeat(2000));
        let record = record(3, &entry);
        for max_len in [1024, 1025, 1026, 1500, 2048] {
            let message = sink().format_message(&record, UNIX_EPOCH, Some(max_len));
            assert!(
                message.len() <= max_len && message.len() + 2 >= max_len,
                "{max_len}"
            );
            let text = String::from_utf8(message).expect("cut at a character boundary");
            assert!(
                text.contains(&format!("truncated=\"{}\"", entry.len())),
                "{text}"
            );
            let payload = text.split_once("] ").unwrap().1;
            assert!(entry.starts_with(payload));
        }
        let small = sink().format_message(&record, UNIX_EPOCH, Some(65_507));
        assert!(!String::from_utf8(small).unwrap().contains("truncated"));
    }

    #[test]
    fn utf8_boundaries() {
        let text = "a\u{e9}\u{20ac}\u{1f600}".as_bytes(); // 1 + 2 + 3 + 4 bytes
        let cuts: Vec<usize> = (0..=11)
            .map(|max| utf8_boundary_at_or_below(text, max))
            .collect();
        assert_eq!(cuts, [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 10]);
        assert_eq!(utf8_boundary_at_or_below(&[0x80; 8], 5), 5);
    }

    #[test]
    fn names_round_trip() {
        for name in Facility::names() {
            assert_eq!(Facility::from_name(name).unwrap().to_string(), *name);
        }
        for name in Severity::names() {
            assert_eq!(Severity::from_name(name).unwrap().to_string(), *name);
        }
        assert_eq!(Facility::from_name("local0"), Some(Facility::LOCAL0));
        assert_eq!(Facility::LOCAL0.code(), 16);
        assert_eq!(Severity::from_name("notice"), Some(Severity::NOTICE));
        assert_eq!(Facility::from_name("local8"), None);
    }
}
