//! CRI container log files read as kubelet reads them for `kubectl logs`: each line is
//! `<RFC 3339 time> <stdout|stderr> <P|F> <message>`, P-tagged fragments join the next
//! line, and the options of `/containerLogs` (tailLines, sinceSeconds/sinceTime, timestamps,
//! limitBytes) pick and shape what is written out. Pure: bytes in, bytes out.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

use super::query::Params;

/// The options of one `/containerLogs` request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming what the container writes until it exits.
    pub follow: bool,
    /// The previous (exited) instance of the container rather than the current one.
    pub previous: bool,
    /// Prefix each line with the time the runtime read it.
    pub timestamps: bool,
    /// Only the last this many lines of the file.
    pub tail_lines: Option<u64>,
    /// Only what was written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the query of a `/containerLogs` request, as kubelet does (`sinceSeconds` counts
    /// back from `now`; `sinceTime` is RFC 3339; negative numbers are refused).
    pub fn from_query(params: &Params, now: DateTime<Utc>) -> Result<Self, String> {
        let number = |name: &str| -> Result<Option<i64>, String> {
            match params.get(name) {
                None | Some("") => Ok(None),
                Some(text) => match text.parse::<i64>() {
                    Ok(n) if n >= 0 => Ok(Some(n)),
                    Ok(_) => Err(format!("{name}: must be greater than or equal to 0")),
                    Err(_) => Err(format!("{name}: invalid value {text:?}")),
                },
            }
        };
        let since_seconds = number("sinceSeconds")?;
        let since_time = match params.get("sinceTime") {
            None | Some("") => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| format!("sinceTime: invalid value {text:?}"))?
                    .with_timezone(&Utc),
            ),
        };
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".to_owned());
        }
        let since = since_time.or_else(|| {
            since_seconds.map(|s| now - chrono::Duration::seconds(s.min(i64::from(u32::MAX))))
        });
        let unsigned = |n: Option<i64>| n.map(|n| n.unsigned_abs());
        Ok(Self {
            follow: params.flag("follow"),
            previous: params.flag("previous"),
            timestamps: params.flag("timestamps"),
            tail_lines: unsigned(number("tailLines")?),
            since,
            limit_bytes: unsigned(number("limitBytes")?),
        })
    }
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub time: DateTime<FixedOffset>,
    pub stream: &'a str,
    /// A fragment of a longer line, continued by the next line of the same stream.
    pub partial: bool,
    pub message: &'a [u8],
}

/// Reads one line (without its newline). Lines that are not in the CRI format are `None`:
/// kubelet skips them rather than failing the whole read.
pub fn parse_line(line: &[u8]) -> Option<LogLine<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?;
    let stream = std::str::from_utf8(fields.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    // Tags are `:`-separated; P (partial) or F (full) comes first.
    let tags = std::str::from_utf8(fields.next()?).ok()?;
    let partial = tags.split(':').next()? == "P";
    let message = fields.next().unwrap_or_default();
    Some(LogLine {
        time,
        stream,
        partial,
        message,
    })
}

/// Where the last `lines` lines of `data` start: the byte offset after the newline that ends
/// the line before them. Lines are the file's own (fragments count one each), as kubelet
/// counts them; an unterminated last line counts too.
pub fn tail_start(data: &[u8], lines: u64) -> usize {
    if lines == 0 {
        return data.len();
    }
    let mut remaining = lines;
    // A trailing newline ends the last line rather than starting an empty one.
    let end = if data.last() == Some(&b'\n') {
        data.len() - 1
    } else {
        data.len()
    };
    for (i, b) in data[..end].iter().enumerate().rev() {
        if *b == b'\n' {
            remaining -= 1;
            if remaining == 0 {
                return i + 1;
            }
        }
    }
    0
}

/// Turns log lines into `kubectl logs` output: joins fragments, prefixes timestamps at the
/// start of each joined line, drops what is older than `since`, stops at `limit_bytes`.
#[derive(Debug, Clone)]
pub struct LogWriter {
    timestamps: bool,
    since: Option<DateTime<Utc>>,
    /// Bytes still allowed out; `None` is unlimited.
    remaining: Option<u64>,
    /// The last fragment written was partial: the next one continues its line.
    in_partial: bool,
}

impl LogWriter {
    pub fn new(options: &LogOptions) -> Self {
        Self {
            timestamps: options.timestamps,
            since: options.since,
            remaining: options.limit_bytes,
            in_partial: false,
        }
    }

    /// Whether the byte limit is used up: nothing more will be written.
    pub fn is_done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Appends to `out` what one raw file line contributes.
    pub fn write_line(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let Some(line) = parse_line(raw) else {
            return;
        };
        if self.since.is_some_and(|since| line.time < since) {
            return;
        }
        let mut text = Vec::with_capacity(line.message.len() + 40);
        if self.timestamps && !self.in_partial {
            text.extend_from_slice(
                line.time
                    .to_rfc3339_opts(SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            text.push(b' ');
        }
        text.extend_from_slice(line.message);
        if !line.partial {
            text.push(b'\n');
        }
        self.in_partial = line.partial;
        match &mut self.remaining {
            None => out.extend_from_slice(&text),
            Some(remaining) => {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(text.len());
                out.extend_from_slice(&text[..n]);
                *remaining -= n as u64;
            }
        }
    }

    /// Appends what every complete line in `data` contributes and returns how many bytes
    /// were consumed: an unterminated last line is left for when it is complete.
    pub fn write_complete_lines(&mut self, data: &[u8], out: &mut Vec<u8>) -> usize {
        let mut consumed = 0;
        while let Some(end) = data[consumed..].iter().position(|b| *b == b'\n') {
            if self.is_done() {
                break;
            }
            self.write_line(&data[consumed..consumed + end], out);
            consumed += end + 1;
        }
        consumed
    }
}

/// A whole file's output under `options`, with no following: what `kubectl logs` without
/// `-f` shows of it.
pub fn render(data: &[u8], options: &LogOptions) -> Vec<u8> {
    let start = options.tail_lines.map_or(0, |n| tail_start(data, n));
    let mut writer = LogWriter::new(options);
    let mut out = Vec::new();
    let rest = &data[start..];
    let consumed = writer.write_complete_lines(rest, &mut out);
    if consumed < rest.len() && !writer.is_done() {
        writer.write_line(&rest[consumed..], &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
2024-05-01T10:00:00.000000001Z stdout F one
2024-05-01T10:00:01.5Z stderr F two
2024-05-01T10:00:02Z stdout P thr
2024-05-01T10:00:02.1Z stdout F ee
2024-05-01T10:00:03Z stdout F four
";

    fn options() -> LogOptions {
        LogOptions::default()
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn lines_parse_into_time_stream_tag_and_message() {
        let line = parse_line(b"2024-05-01T10:00:01.5Z stderr F two words").expect("parses");
        assert_eq!(line.stream, "stderr");
        assert!(!line.partial);
        assert_eq!(line.message, b"two words");
        assert_eq!(line.time.timestamp_subsec_millis(), 500);
        assert!(parse_line(b"2024-05-01T10:00:01Z stdout P:x frag").is_some_and(|l| l.partial));
        assert_eq!(
            parse_line(b"2024-05-01T10:00:01Z stdout F ").map(|l| l.message),
            Some(&b""[..])
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_line(b"not a log line").is_none());
        assert!(parse_line(b"2024-05-01T10:00:01Z stdin F x").is_none());
        let out = render(b"garbage\n2024-05-01T10:00:00Z stdout F ok\n", &options());
        assert_eq!(text(out), "ok\n");
    }

    #[test]
    fn partial_lines_are_joined_into_one() {
        assert_eq!(
            text(render(FILE.as_bytes(), &options())),
            "one\ntwo\nthree\nfour\n"
        );
    }

    #[test]
    fn timestamps_prefix_each_joined_line_with_nine_fraction_digits() {
        let out = render(
            FILE.as_bytes(),
            &LogOptions {
                timestamps: true,
                ..options()
            },
        );
        assert_eq!(
            text(out),
            "2024-05-01T10:00:00.000000001Z one\n\
             2024-05-01T10:00:01.500000000Z two\n\
             2024-05-01T10:00:02.000000000Z three\n\
             2024-05-01T10:00:03.000000000Z four\n"
        );
    }

    #[test]
    fn tail_counts_the_files_own_lines_from_the_end() {
        let tail = |n| {
            text(render(
                FILE.as_bytes(),
                &LogOptions {
                    tail_lines: Some(n),
                    ..options()
                },
            ))
        };
        assert_eq!(tail(1), "four\n");
        assert_eq!(tail(2), "ee\nfour\n");
        assert_eq!(tail(4), "two\nthree\nfour\n");
        assert_eq!(tail(100), "one\ntwo\nthree\nfour\n");
        assert_eq!(tail(0), "");
    }

    #[test]
    fn since_drops_what_was_written_before_it() {
        let since = DateTime::parse_from_rfc3339("2024-05-01T10:00:01.5Z")
            .expect("time")
            .with_timezone(&Utc);
        let out = render(
            FILE.as_bytes(),
            &LogOptions {
                since: Some(since),
                ..options()
            },
        );
        assert_eq!(text(out), "two\nthree\nfour\n");
    }

    #[test]
    fn limit_bytes_cuts_the_output_short() {
        let out = render(
            FILE.as_bytes(),
            &LogOptions {
                limit_bytes: Some(6),
                ..options()
            },
        );
        assert_eq!(text(out), "one\ntw");
    }

    #[test]
    fn an_unterminated_last_line_waits_when_following_but_shows_in_a_plain_read() {
        let data = b"2024-05-01T10:00:00Z stdout F a\n2024-05-01T10:00:01Z stdout F b";
        let mut writer = LogWriter::new(&options());
        let mut out = Vec::new();
        let consumed = writer.write_complete_lines(data, &mut out);
        assert_eq!(text(out), "a\n");
        assert_eq!(consumed, 32);
        assert_eq!(text(render(data, &options())), "a\nb\n");
    }

    #[test]
    fn query_options_read_as_kubelet_reads_them() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let params =
            Params::parse("follow=true&tailLines=5&timestamps=1&sinceSeconds=60&previous=false");
        let opts = LogOptions::from_query(&params, now).expect("valid");
        assert!(opts.follow && opts.timestamps && !opts.previous);
        assert_eq!(opts.tail_lines, Some(5));
        assert_eq!(opts.since, Some(now - chrono::Duration::seconds(60)));
        let both = Params::parse("sinceSeconds=1&sinceTime=2024-05-01T09:00:00Z");
        assert!(LogOptions::from_query(&both, now).is_err());
        assert!(LogOptions::from_query(&Params::parse("tailLines=-1"), now).is_err());
        let time = Params::parse("sinceTime=2024-05-01T09%3A00%3A00Z");
        assert_eq!(
            LogOptions::from_query(&time, now).expect("valid").since,
            Some(now - chrono::Duration::hours(1))
        );
    }
}
