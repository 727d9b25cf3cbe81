//! A short summary of a C2PA (JUMBF/CBOR) manifest, found cheaply by searching its bytes for a
//! few CBOR map keys rather than parsing the manifest.
//!
//! The summary is `C2PA manifest`, followed by what was found among
//! `; claim_generator=<name>`, `; software_agent=<name>`, `; digital_source_type=<last URI part>`
//! (e.g. `C2PA manifest; claim_generator=OpenAI Media Service API; software_agent=gpt-image
//! 2.0; digital_source_type=trainedAlgorithmicMedia`).

/// Reads a CBOR text string (major type 3, definite length) at the start of `b`.
fn cbor_text(b: &[u8]) -> Option<&str> {
    let (&first, rest) = b.split_first()?;
    if first >> 5 != 3 {
        return None;
    }
    let (len, rest) = match first & 0x1f {
        n @ 0..=23 => (n as usize, rest),
        24 => (*rest.first()? as usize, rest.get(1..)?),
        25 => (
            u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize,
            rest.get(2..)?,
        ),
        _ => return None,
    };
    if len > 256 {
        return None;
    }
    std::str::from_utf8(rest.get(..len)?).ok()
}

/// The CBOR-encoded text key `key` (as a map key: a text header then the bytes).
fn find_key(data: &[u8], key: &str) -> Vec<usize> {
    let mut enc = Vec::new();
    let n = key.len();
    if n < 24 {
        enc.push(0x60 | n as u8);
    } else {
        enc.extend([0x78, n as u8]);
    }
    enc.extend(key.as_bytes());
    data.windows(enc.len())
        .enumerate()
        .filter(|(_, w)| *w == enc.as_slice())
        .map(|(i, _)| i + enc.len())
        .take(8)
        .collect()
}

/// The first `name` text within a short window after `start` (a CBOR map such as
/// `claim_generator_info` or `softwareAgent`).
fn name_after(data: &[u8], start: usize) -> Option<String> {
    let window = &data[start..data.len().min(start + 256)];
    let at = find_key(window, "name").into_iter().next()?;
    cbor_text(&window[at..]).map(str::to_string)
}

pub(crate) fn summary(data: &[u8]) -> String {
    let mut out = String::from("C2PA manifest");
    let generator = find_key(data, "claim_generator")
        .into_iter()
        .find_map(|at| cbor_text(&data[at..]).map(str::to_string))
        .or_else(|| {
            find_key(data, "claim_generator_info")
                .into_iter()
                .find_map(|at| name_after(data, at))
        });
    if let Some(g) = generator {
        out.push_str(&format!("; claim_generator={g}"));
    }
    let agent = find_key(data, "softwareAgent").into_iter().find_map(|at| {
        cbor_text(&data[at..]).map(str::to_string).or_else(|| {
            let window = &data[at..data.len().min(at + 128)];
            let name = name_after(window, 0)?;
            let version = find_key(window, "version")
                .into_iter()
                .next()
                .and_then(|v| cbor_text(&window[v..]));
            Some(match version {
                Some(v) => format!("{name} {v}"),
                None => name,
            })
        })
    });
    if let Some(a) = agent {
        out.push_str(&format!("; software_agent={a}"));
    }
    if let Some(t) = find_key(data, "digitalSourceType")
        .into_iter()
        .find_map(|at| cbor_text(&data[at..]))
    {
        let short = t.rsplit('/').next().unwrap_or(t);
        out.push_str(&format!("; digital_source_type={short}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_v2_claim() {
        let mut d = b"jumb....c2pa".to_vec();
        d.extend(b"\x74claim_generator_info\xa4\x64name\x78\x18OpenAI Media Service API");
        d.extend(b"\x6dsoftwareAgent\xa2\x64name\x69gpt-image\x67version\x632.0");
        d.extend(b"\x71digitalSourceType\x78\x46http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia");
        assert_eq!(
            summary(&d),
            "C2PA manifest; claim_generator=OpenAI Media Service API; software_agent=gpt-image 2.0; digital_source_type=trainedAlgorithmicMedia"
        );
        assert_eq!(summary(b""), "C2PA manifest");
        assert_eq!(summary(b"\x6fclaim_generator\x79"), "C2PA manifest");
        assert_eq!(
            summary(b"\x6fclaim_generator\x63abc"),
            "C2PA manifest; claim_generator=abc"
        );
    }
}
