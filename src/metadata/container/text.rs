//! Charset decoding for the text carriers: PNG text (UTF-8 with a Latin-1 fallback), EXIF
//! ASCII tags (leading NULs stripped) and EXIF `UserComment` with its 8-byte charset header
//! (spec A1.3). Every function is total: invalid input becomes replacement characters, never a
//! panic.

/// Latin-1 (ISO 8859-1): every byte is the code point of the same value.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// UTF-8 when the bytes are valid UTF-8, else Latin-1. Real writers put raw UTF-8 in PNG
/// `tEXt` although the PNG spec says Latin-1; a Latin-1 text with bytes >= 0x80 is almost
/// never valid UTF-8, so trying UTF-8 first is safe.
pub fn utf8_or_latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => latin1(bytes),
    }
}

/// `bytes` without leading and trailing NUL bytes.
pub fn trim_nuls(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != 0).map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// `bytes` without trailing NUL bytes.
pub fn trim_trailing_nuls(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

/// An EXIF ASCII-typed value. NovelAI's WebP `ImageDescription` starts with four NUL bytes
/// before its UTF-8 text, so leading NULs are stripped rather than cutting at the first NUL;
/// trailing NULs (the terminator, padding) are trimmed; inner bytes are kept.
pub fn exif_ascii(bytes: &[u8]) -> String {
    utf8_or_latin1(trim_nuls(bytes))
}

/// UTF-16 in the given byte order; a trailing odd byte is dropped, unpaired surrogates become
/// U+FFFD, trailing NUL code units are trimmed, and a leading BOM is removed.
pub fn utf16(bytes: &[u8], big_endian: bool) -> String {
    let units = bytes.chunks_exact(2).map(|c| {
        if big_endian {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_le_bytes([c[0], c[1]])
        }
    });
    let mut units: Vec<u16> = units.collect();
    while units.last() == Some(&0) {
        units.pop();
    }
    let start = usize::from(units.first() == Some(&0xFEFF));
    char::decode_utf16(units[start..].iter().copied())
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Decides the byte order of a UTF-16 text that has no defined one (EXIF `UNICODE`
/// UserComment): the BOM when present; else where the zero bytes fall over the first ~1000
/// bytes (more zeros at even offsets means big-endian: `\0a\0b`); on a tie (CJK-heavy text,
/// or no zeros) ExifTool's rule: read the units in the TIFF byte order and swap when the high
/// bytes take more distinct values than the low bytes (or as many, with the low byte zero more
/// often).
pub fn utf16_is_big_endian(bytes: &[u8], tiff_big_endian: bool) -> bool {
    match bytes {
        [0xFE, 0xFF, ..] => return true,
        [0xFF, 0xFE, ..] => return false,
        _ => {}
    }
    let window = &bytes[..bytes.len().min(1000) & !1];
    let (mut even, mut odd) = (0usize, 0usize);
    for (i, &b) in window.iter().enumerate() {
        if b == 0 {
            if i % 2 == 0 {
                even += 1;
            } else {
                odd += 1;
            }
        }
    }
    if even != odd {
        return even > odd;
    }
    // ExifTool's tiebreak (Charset.pm): count distinct high and low bytes in the TIFF order.
    let mut high = [false; 256];
    let mut low = [false; 256];
    let (mut high_zero, mut low_zero) = (0usize, 0usize);
    for c in window.chunks_exact(2) {
        let (h, l) = if tiff_big_endian {
            (c[0], c[1])
        } else {
            (c[1], c[0])
        };
        high[h as usize] = true;
        low[l as usize] = true;
        high_zero += usize::from(h == 0);
        low_zero += usize::from(l == 0);
    }
    let distinct = |t: &[bool; 256]| t.iter().filter(|&&b| b).count();
    let (dh, dl) = (distinct(&high), distinct(&low));
    let swap = dh > dl || (dh == dl && low_zero > high_zero);
    tiff_big_endian != swap
}

/// EXIF `UserComment` (0x9286): an 8-byte charset id and the text (spec A1.3).
///
/// * `ASCII\0\0\0`: UTF-8 (lossy; NovelAI puts UTF-8 JSON behind it), trailing NULs trimmed;
/// * `UNICODE\0`: UTF-16 in the order [`utf16_is_big_endian`] decides, regardless of the TIFF
///   byte order;
/// * `JIS\0\0\0\0\0`: decoded lossily as UTF-8 (no JIS table here);
/// * eight NULs (undefined) or a `UTF8`/`UTF-8` header: UTF-8;
/// * no known header (ComfyUI SaveImagePlus, Fooocus: ASCII-typed in IFD0): the whole value as
///   UTF-8 with leading and trailing NULs stripped.
pub fn user_comment(bytes: &[u8], tiff_big_endian: bool) -> String {
    if bytes.len() >= 8 {
        let (head, data) = bytes.split_at(8);
        if head == b"UNICODE\0" {
            let be = utf16_is_big_endian(data, tiff_big_endian);
            return utf16(data, be);
        }
        let header_is = |name: &[u8]| {
            head.starts_with(name) && head[name.len()..].iter().all(|&b| b == 0 || b == b' ')
        };
        if header_is(b"ASCII")
            || header_is(b"JIS")
            || header_is(b"UTF8")
            || header_is(b"UTF-8")
            || head == [0u8; 8]
        {
            return String::from_utf8_lossy(trim_trailing_nuls(data)).into_owned();
        }
    }
    exif_ascii(bytes)
}

/// A value that is only text if it decodes: valid UTF-8 after trimming NULs, with no control
/// characters but tab, CR and LF (EXIF `MakerNote`, which is usually binary).
pub fn strict_text(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(trim_nuls(bytes)).ok()?;
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return None;
    }
    Some(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16_bytes(s: &str, be: bool) -> Vec<u8> {
        s.encode_utf16()
            .flat_map(|u| if be { u.to_be_bytes() } else { u.to_le_bytes() })
            .collect()
    }

    fn unicode_comment(s: &str, be: bool) -> Vec<u8> {
        let mut v = b"UNICODE\0".to_vec();
        v.extend(utf16_bytes(s, be));
        v
    }

    #[test]
    fn text_chunk_is_utf8_then_latin1() {
        assert_eq!(utf8_or_latin1("テスト".as_bytes()), "テスト");
        assert_eq!(utf8_or_latin1(b"caf\xe9"), "café");
        assert_eq!(latin1(b"\xff"), "ÿ");
    }

    #[test]
    fn user_comment_utf16_byte_order_follows_the_zeros_not_the_tiff() {
        let text = "masterpiece, 1girl, #テスト\nSteps: 20";
        // Big-endian inside a little-endian TIFF (Civitai, SD.Next thumbnails).
        assert_eq!(user_comment(&unicode_comment(text, true), false), text);
        // Little-endian inside a little-endian TIFF (SwarmUI).
        assert_eq!(user_comment(&unicode_comment(text, false), false), text);
        // Big-endian inside a big-endian TIFF (A1111 via piexif).
        assert_eq!(user_comment(&unicode_comment(text, true), true), text);
        // Little-endian in a big-endian TIFF.
        assert_eq!(user_comment(&unicode_comment(text, false), true), text);
    }

    #[test]
    fn user_comment_bom_wins() {
        let mut v = b"UNICODE\0".to_vec();
        v.extend([0xFF, 0xFE]);
        v.extend(utf16_bytes("ab", false));
        assert_eq!(user_comment(&v, true), "ab");
        let mut v = b"UNICODE\0".to_vec();
        v.extend([0xFE, 0xFF]);
        v.extend(utf16_bytes("ab", true));
        assert_eq!(user_comment(&v, false), "ab");
    }

    #[test]
    fn user_comment_cjk_only_uses_distinct_byte_tiebreak() {
        // No zero bytes at all: the zero count ties, the distinct-byte rule decides.
        let text = "初音ミク、テスト、東京の夜景と美しい少女";
        for be in [true, false] {
            for tiff_be in [true, false] {
                assert_eq!(user_comment(&unicode_comment(text, be), tiff_be), text);
            }
        }
    }

    #[test]
    fn user_comment_trailing_nuls_and_odd_length() {
        let mut v = unicode_comment("abc", true);
        v.extend([0, 0, 0, 0, 0]);
        assert_eq!(user_comment(&v, false), "abc");
    }

    #[test]
    fn user_comment_lone_surrogate_is_replaced() {
        let mut v = b"UNICODE\0".to_vec();
        v.extend([0xD8, 0x00, 0x00, 0x61]); // lone high surrogate, then 'a' (BE)
        assert_eq!(user_comment(&v, true), "\u{FFFD}a");
    }

    #[test]
    fn user_comment_other_headers() {
        assert_eq!(
            user_comment(b"ASCII\0\0\0{\"a\":\"\xe3\x83\x86\"}\0\0", true),
            "{\"a\":\"テ\"}"
        );
        assert_eq!(user_comment(b"\0\0\0\0\0\0\0\0hello", true), "hello");
        assert_eq!(user_comment(b"UTF8\0\0\0\0hello", true), "hello");
        assert_eq!(user_comment(b"JIS\0\0\0\0\0abc", true), "abc");
        // No header at all (ComfyUI SaveImagePlus, Fooocus).
        assert_eq!(user_comment(b"{\"prompt\": 1}\0", true), "{\"prompt\": 1}");
        assert_eq!(user_comment(b"", true), "");
        assert_eq!(user_comment(b"ASCII\0\0\0", false), "");
        assert_eq!(
            user_comment(b"ASCII\0\0\0\xff\xfe", false),
            "\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn novelai_description_keeps_text_after_leading_nuls() {
        assert_eq!(exif_ascii(b"\0\0\0\x001girl, solo\0"), "1girl, solo");
        assert_eq!(exif_ascii(b"\0\0\0"), "");
    }

    #[test]
    fn strict_text_rejects_binary() {
        assert_eq!(strict_text(b"fooocus\0").as_deref(), Some("fooocus"));
        assert_eq!(strict_text(b"Nikon\0\x02\x10\0\0"), None);
        assert_eq!(strict_text(b"\xff\xfe"), None);
    }
}
