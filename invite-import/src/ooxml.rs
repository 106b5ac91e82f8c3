//! The zip side of xlsx/xlsm/xlsb/ods: format classification and zip-bomb checks
//! from the central directory alone, and a single streaming scan of an xlsx sheet
//! for what calamine's cell reader does not expose (merged cells, hidden rows,
//! `mailto:` hyperlinks).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::sync::Arc;

use zip::ZipArchive;

use crate::validate::{Merge, SheetExtras};
use crate::{FileHint, Format, ImportError, ImportLimits};

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

pub(crate) fn open(bytes: &[u8], format: Format) -> Result<Archive<'_>, ImportError> {
    ZipArchive::new(Cursor::new(bytes)).map_err(|error| ImportError::Corrupt {
        format,
        detail: "the zip container is cut off or damaged".to_owned(),
        source: Some(Box::new(error)),
    })
}

/// Classifies a zip container and checks its declared sizes against the limits.
pub(crate) fn inspect(
    bytes: &[u8],
    hint: FileHint<'_>,
    limits: &ImportLimits,
) -> Result<Format, ImportError> {
    let claimed = hint.claimed_format().unwrap_or(Format::Xlsx);
    let mut archive = open(bytes, claimed)?;
    let mut uncompressed: u64 = 0;
    let mut compressed: u64 = 0;
    let mut encrypted = false;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_data(index)
            .map_err(|error| ImportError::Corrupt {
                format: claimed,
                detail: "the zip directory is damaged".to_owned(),
                source: Some(Box::new(error)),
            })?;
        uncompressed = uncompressed.saturating_add(entry.size());
        compressed = compressed.saturating_add(entry.compressed_size());
        encrypted |= entry.encrypted();
    }
    let has = |name: &str| archive.index_for_name(name).is_some();
    let format = if has("xl/workbook.bin") {
        Format::Xlsb
    } else if has("xl/workbook.xml") {
        let macro_enabled = read_small(&mut archive, "[Content_Types].xml", 1 << 20)
            .is_some_and(|types| types.to_ascii_lowercase().contains("macroenabled"));
        if macro_enabled {
            Format::Xlsm
        } else {
            Format::Xlsx
        }
    } else if has("content.xml") || has("mimetype") {
        let mimetype = read_small(&mut archive, "mimetype", 256).unwrap_or_default();
        if mimetype.contains("opendocument.spreadsheet") {
            Format::Ods
        } else if mimetype.contains("opendocument") {
            return Err(ImportError::NotASpreadsheet {
                detected: "an OpenDocument file that is not a spreadsheet",
                name: hint.describe(),
            });
        } else {
            Format::Ods
        }
    } else if has("word/document.xml") {
        return Err(ImportError::NotASpreadsheet {
            detected: "a Word document",
            name: hint.describe(),
        });
    } else if has("ppt/presentation.xml") {
        return Err(ImportError::NotASpreadsheet {
            detected: "a PowerPoint presentation",
            name: hint.describe(),
        });
    } else if archive.is_empty() {
        return Err(ImportError::Corrupt {
            format: claimed,
            detail: "the zip container is empty".to_owned(),
            source: None,
        });
    } else {
        return Err(ImportError::NotASpreadsheet {
            detected: "a zip archive",
            name: hint.describe(),
        });
    };
    if encrypted {
        return Err(ImportError::Encrypted { format });
    }
    if matches!(format, Format::Xlsx | Format::Xlsm) {
        check_shared_strings(&mut archive, format)?;
    }
    if uncompressed > limits.max_uncompressed_bytes {
        return Err(ImportError::ArchiveTooLarge {
            format,
            uncompressed,
            limit: limits.max_uncompressed_bytes,
        });
    }
    if uncompressed > ImportLimits::RATIO_CHECK_FLOOR {
        let ratio = uncompressed / compressed.max(1);
        if ratio > u64::from(limits.max_compression_ratio) {
            return Err(ImportError::CompressionRatio {
                format,
                ratio,
                limit: limits.max_compression_ratio,
            });
        }
    }
    Ok(format)
}

/// Refuses a shared-strings part that declares more strings than it could hold:
/// calamine reserves room for `uniqueCount` strings before reading one (24 bytes each),
/// so `uniqueCount="10000000000"` in a 1 KB file asked for 240 GB and aborted the
/// process. A string takes at least `<si/>`, five bytes, so the count may be at most
/// the part's size over five, which the archive's size limit then bounds.
fn check_shared_strings(archive: &mut Archive<'_>, format: Format) -> Result<(), ImportError> {
    // The sst start tag opens the part: found within its first 64 KiB, or refused.
    const HEAD: u64 = 1 << 16;
    for index in 0..archive.len() {
        let Ok(entry) = archive.by_index(index) else {
            continue;
        };
        if !entry
            .name()
            .is_ok_and(|name| name.ends_with("sharedStrings.xml"))
        {
            continue;
        }
        let size = entry.size();
        let mut declared: Option<Option<u64>> = None;
        let _ = scan_tags_read(&mut entry.take(HEAD), &[b"sst"], |_, tag| {
            if declared.is_none() {
                declared = Some(
                    attr(tag, b"uniqueCount")
                        .and_then(|count| std::str::from_utf8(count).ok()?.trim().parse().ok()),
                );
            }
        });
        let refused = match declared {
            None => size > HEAD,
            Some(count) => count.is_some_and(|count: u64| count > size / 5),
        };
        if refused {
            return Err(ImportError::Corrupt {
                format,
                detail: "its shared strings declare more strings than they hold".to_owned(),
                source: None,
            });
        }
    }
    Ok(())
}

/// Reads a small entry as text, at most `max` bytes.
fn read_small(archive: &mut Archive<'_>, name: &str, max: u64) -> Option<String> {
    let entry = archive.by_name(name).ok()?;
    let mut text = String::new();
    entry.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Sheet name → path of its XML part, from `xl/workbook.xml` and its relationships.
pub(crate) fn sheet_paths(bytes: &[u8]) -> HashMap<String, String> {
    let mut paths = HashMap::new();
    let Ok(mut archive) = ZipArchive::new(Cursor::new(bytes)) else {
        return paths;
    };
    let (Some(workbook), Some(rels)) = (
        read_small(&mut archive, "xl/workbook.xml", 16 << 20),
        read_small(&mut archive, "xl/_rels/workbook.xml.rels", 16 << 20),
    ) else {
        return paths;
    };
    let mut targets = HashMap::new();
    scan_tags(rels.as_bytes(), &[b"Relationship"], |_, tag| {
        if let (Some(id), Some(target)) = (attr(tag, b"Id"), attr(tag, b"Target")) {
            targets.insert(unescape(id), resolve_target("xl/", &unescape(target)));
        }
    });
    scan_tags(workbook.as_bytes(), &[b"sheet"], |_, tag| {
        if let (Some(name), Some(id)) = (attr(tag, b"name"), attr(tag, b"id"))
            && let Some(path) = targets.get(&unescape(id))
        {
            paths.insert(unescape(name), path.clone());
        }
    });
    paths
}

fn resolve_target(base: &str, target: &str) -> String {
    if let Some(absolute) = target.strip_prefix('/') {
        return absolute.to_owned();
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// One streaming pass over a sheet's XML for hidden rows, merged cells and
/// `mailto:` hyperlinks. A sheet that cannot be read yields no extras: calamine
/// reports the damage itself.
///
/// The pass looks only at the few places that matter: `memmem` finds `hidden=`,
/// `mergeCell` and `hyperlink` in the inflated XML, and only the tags around those
/// hits are parsed (a full tag walk visits every cell). Two cases fall back to the
/// tag-by-tag walk, which gives the same answer on ordinary sheets: markup
/// declarations (`<!--`, `<![CDATA[`, which could hide tag-like text), and a hidden
/// row without a usable `r` attribute (its number comes from counting rows).
pub(crate) fn sheet_extras(
    bytes: &[u8],
    sheet_path: &str,
    email_column: u32,
    max_rows: u64,
) -> SheetExtras {
    let Ok(mut archive) = ZipArchive::new(Cursor::new(bytes)) else {
        return SheetExtras::default();
    };
    let mut found = Found::new(email_column, max_rows);
    let mut fast = true;
    if let Ok(entry) = archive.by_name(sheet_path) {
        let mut unnumbered = false;
        let complete = scan_hits_read(entry, |name, tag| match name {
            b"row" => {
                if matches!(attr(tag, b"hidden"), Some(b"1" | b"true")) {
                    match attr(tag, b"r").and_then(|r| std::str::from_utf8(r).ok()?.parse().ok()) {
                        Some(row) => found.hidden(row),
                        None => unnumbered = true,
                    }
                }
            }
            _ => found.tag(name, tag),
        });
        fast = !unnumbered && complete.unwrap_or(true);
    }
    if !fast {
        found = Found::new(email_column, max_rows);
        if let Ok(entry) = archive.by_name(sheet_path) {
            let mut row: u64 = 0;
            let _ = scan_tags_read(
                &mut std::io::BufReader::with_capacity(1 << 16, entry),
                &[b"row", b"mergeCell", b"hyperlink"],
                |name, tag| match name {
                    b"row" => {
                        row = attr(tag, b"r")
                            .and_then(|r| std::str::from_utf8(r).ok()?.parse().ok())
                            .unwrap_or(row + 1);
                        if matches!(attr(tag, b"hidden"), Some(b"1" | b"true")) {
                            found.hidden(row);
                        }
                    }
                    _ => found.tag(name, tag),
                },
            );
        }
    }
    let Found {
        mut extras, links, ..
    } = found;
    if links.is_empty() {
        return extras;
    }
    let (dir, file) = sheet_path.rsplit_once('/').unwrap_or(("", sheet_path));
    let rels_path = format!("{dir}/_rels/{file}.rels");
    let Some(rels) = read_small(&mut archive, &rels_path, 16 << 20) else {
        return extras;
    };
    let mut targets = HashMap::new();
    scan_tags(rels.as_bytes(), &[b"Relationship"], |_, tag| {
        if let (Some(id), Some(target)) = (attr(tag, b"Id"), attr(tag, b"Target")) {
            targets.insert(id.to_vec(), unescape(target));
        }
    });
    let mut writes = max_rows.saturating_mul(4);
    // One copy of each target, shared by the cells its links cover.
    let mut shared: HashMap<Vec<u8>, Option<Arc<str>>> = HashMap::new();
    for (merge, id) in links {
        let Some(target) = targets.get(&id) else {
            continue;
        };
        let address = shared.entry(id).or_insert_with(|| {
            let (address, _) = crate::validate::extract_address(target);
            // A target too long to be an address (the cell limit does not reach the
            // relationships part) is no link to use: the cell's own text stands.
            (target
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
                && address.len() <= MAX_LINKED_ADDRESS)
                .then(|| Arc::from(address))
        });
        let Some(address) = address else {
            continue;
        };
        // A sheet has at most `max_rows` rows to import: a flood of hyperlinks over
        // long ranges (10,000 of `A1:A1000` in 400 KB of XML) would otherwise be 10^7
        // entries, and overlapping ones as many writes.
        for r in merge.first_row..=merge.last_row {
            if writes == 0 {
                return extras;
            }
            writes -= 1;
            extras.mailto.insert((r, email_column), Arc::clone(address));
        }
    }
    extras
}

/// `B5` → zero-based (row 4, column 1); `$` signs allowed.
fn parse_cell(reference: &[u8]) -> Option<(u32, u32)> {
    let reference: Vec<u8> = reference.iter().copied().filter(|b| *b != b'$').collect();
    let split = reference.iter().position(u8::is_ascii_digit)?;
    let letters = std::str::from_utf8(&reference[..split]).ok()?;
    let column = crate::column_index(letters)?;
    let row: u32 = std::str::from_utf8(&reference[split..])
        .ok()?
        .parse()
        .ok()?;
    Some((row.checked_sub(1)?, column))
}

/// `B5:C7` (or a single cell) → a zero-based inclusive region.
fn parse_range(range: &[u8]) -> Option<Merge> {
    let (start, end) = match range.iter().position(|b| *b == b':') {
        Some(colon) => (&range[..colon], &range[colon + 1..]),
        None => (range, range),
    };
    let (r0, c0) = parse_cell(start)?;
    let (r1, c1) = parse_cell(end)?;
    Some(Merge {
        first_row: r0.min(r1),
        last_row: r0.max(r1),
        first_col: c0.min(c1),
        last_col: c0.max(c1),
    })
}

/// An attribute's raw value; `name` matches the local name (`r:id` matches `id`).
fn attr<'t>(tag: &'t [u8], name: &[u8]) -> Option<&'t [u8]> {
    let mut rest = tag;
    loop {
        let eq = memchr::memchr(b'=', rest)?;
        let key_start = rest[..eq]
            .iter()
            .rposition(u8::is_ascii_whitespace)
            .map_or(0, |p| p + 1);
        let key = &rest[key_start..eq];
        let local = key.rsplit(|b| *b == b':').next().unwrap_or(key);
        let after = &rest[eq + 1..];
        let quote = *after.first()?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let close = memchr::memchr(quote, &after[1..])?;
        if local == name {
            return Some(&after[1..=close]);
        }
        rest = &after[close + 2..];
    }
}

fn unescape(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if !text.contains('&') {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_ref();
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|s| *s <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity.strip_prefix('#').and_then(|n| {
                let code = match n.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                };
                code.and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A `mergeCell` or `hyperlink` start tag.
/// The longest address a `mailto:` link can give (RFC 5321's 254 bytes).
const MAX_LINKED_ADDRESS: usize = 254;

/// What a sheet's pass keeps, each kind up to a bound that follows the row limit:
/// 256 MiB of XML, within the archive limits, declares millions of hidden rows,
/// merged regions or hyperlinks, which held kept whole would cost gigabytes. A
/// sheet that could be imported has at most `max_rows` data rows, so the bounds
/// leave every real sheet whole; past one, a flood only loses its own notes.
struct Found {
    extras: SheetExtras,
    /// Hyperlinks over the email column: their cells and relationship ids.
    links: Vec<(Merge, Vec<u8>)>,
    email_column: u32,
    cap: usize,
}

impl Found {
    /// Rows a sheet may have above or among its data beyond `max_rows` (titles, the
    /// header, blank rows at the top).
    const SLACK: usize = 1024;

    fn new(email_column: u32, max_rows: u64) -> Self {
        Self {
            extras: SheetExtras::default(),
            links: Vec::new(),
            email_column,
            cap: usize::try_from(max_rows)
                .unwrap_or(usize::MAX)
                .saturating_add(Self::SLACK),
        }
    }

    fn hidden(&mut self, row: u64) {
        if self.extras.hidden_rows.len() < self.cap {
            self.extras.hidden_rows.insert(row);
        }
    }

    /// A `mergeCell` or `hyperlink` start tag.
    fn tag(&mut self, name: &[u8], tag: &[u8]) {
        if name == b"mergeCell" {
            // Regions are kept in any column (a role or name column may lend its value
            // down), several per data row at most in a real sheet.
            if self.extras.merges.len() < self.cap.saturating_mul(4)
                && let Some(merge) = attr(tag, b"ref").and_then(parse_range)
            {
                self.extras.merges.push(merge);
            }
        } else if self.links.len() < self.cap
            && let (Some(merge), Some(id)) = (attr(tag, b"ref").and_then(parse_range), attr(tag, b"id"))
            // Only the email column's cells are ever looked up.
            && (merge.first_col..=merge.last_col).contains(&self.email_column)
        {
            self.links.push((merge, id.to_vec()));
        }
    }
}

/// What [`scan_hits_read`] looks for: a byte string inside the start tags that
/// matter, and the local name the tag around it must have.
const HITS: [(&[u8], &[u8]); 3] = [
    (b"hidden=", b"row"),
    (b"mergeCell", b"mergeCell"),
    (b"hyperlink", b"hyperlink"),
];

/// Calls `on_tag(local_name, tag_body)` for each `row` start tag with a `hidden`
/// attribute and each `mergeCell` / `hyperlink` start tag, found by `memmem`
/// rather than by visiting every tag. Returns `Ok(false)`, having stopped, when
/// the XML has a markup declaration (`<!`), which the caller must walk tag by tag.
/// Holds at most one chunk plus one tag.
fn scan_hits_read<R: Read>(
    mut reader: R,
    mut on_tag: impl FnMut(&[u8], &[u8]),
) -> std::io::Result<bool> {
    use memchr::memmem::Finder;
    const CHUNK: usize = 1 << 18;
    const MAX_TAG: usize = 1 << 20;
    let finders = HITS.map(|(needle, _)| Finder::new(needle));
    let declaration = Finder::new(b"<!");
    // `buffer[..len]` holds the data; the bytes after it stay initialized, so a
    // read does not zero a fresh chunk first.
    let mut buffer: Vec<u8> = vec![0; 2 * CHUNK];
    let mut len = 0;
    loop {
        let filled = len;
        if buffer.len() < filled + CHUNK {
            buffer.resize(filled + CHUNK, 0);
        }
        let n = reader.read(&mut buffer[filled..filled + CHUNK])?;
        len = filled + n;
        let buf = &buffer[..len];
        // Everything before the last `<` is complete, unless that `<` opens a
        // tag still waiting for its `>`: keep that tag for the next chunk. No
        // needle contains `<`, so none straddles the cut.
        let cut = match memchr::memrchr(b'<', buf) {
            Some(lt) if n > 0 && memchr::memchr(b'>', &buf[lt..]).is_none() => lt,
            _ => buf.len(),
        };
        let region = &buf[..cut];
        if declaration.find(region).is_some() {
            return Ok(false);
        }
        for (finder, (_, wanted)) in finders.iter().zip(HITS) {
            let mut last = None;
            for hit in finder.find_iter(region) {
                let Some(lt) = memchr::memrchr(b'<', &region[..hit]) else {
                    continue;
                };
                if last == Some(lt) || memchr::memchr(b'>', &region[lt..hit]).is_some() {
                    continue;
                }
                last = Some(lt);
                let Some(gt) = memchr::memchr(b'>', &buf[lt..]) else {
                    continue;
                };
                let tag = &buf[lt + 1..lt + gt];
                let name_end = tag
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || *b == b'/')
                    .unwrap_or(tag.len());
                let name = &tag[..name_end];
                let local = name.rsplit(|b| *b == b':').next().unwrap_or(name);
                if local == wanted {
                    on_tag(local, tag);
                }
            }
        }
        let rest = len - cut;
        if n == 0 {
            return Ok(true);
        }
        if rest > MAX_TAG {
            len = 0;
        } else {
            buffer.copy_within(cut..cut + rest, 0);
            len = rest;
        }
    }
}

/// Calls `on_tag(local_name, tag_body)` for each start tag named in `wanted`.
fn scan_tags(xml: &[u8], wanted: &[&[u8]], on_tag: impl FnMut(&[u8], &[u8])) {
    let _ = scan_tags_read(&mut &*xml, wanted, on_tag);
}

/// Streaming version of [`scan_tags`]: holds at most one chunk plus one tag.
fn scan_tags_read<R: Read>(
    reader: &mut R,
    wanted: &[&[u8]],
    mut on_tag: impl FnMut(&[u8], &[u8]),
) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 16;
    const MAX_TAG: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some(lt) = memchr::memchr(b'<', &buf[at..]) {
            let start = at + lt;
            let Some(gt) = memchr::memchr(b'>', &buf[start..]) else {
                at = start;
                break;
            };
            let tag = &buf[start + 1..start + gt];
            let name_end = tag
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'/')
                .unwrap_or(tag.len());
            let name = &tag[..name_end];
            let local = name.rsplit(|b| *b == b':').next().unwrap_or(name);
            if wanted.contains(&local) {
                on_tag(local, tag);
            }
            at = start + gt + 1;
        }
        if memchr::memchr(b'<', &buf[at..]).is_none() {
            at = buf.len();
        }
        if buf.len() - at > MAX_TAG {
            at = buf.len();
        }
        buf.drain(..at);
        if n == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_ranges() {
        let tag = br#"row r="7" spans="1:4" hidden="1" x14ac:dyDescent="0.25""#;
        assert_eq!(attr(tag, b"r"), Some(&b"7"[..]));
        assert_eq!(attr(tag, b"hidden"), Some(&b"1"[..]));
        assert_eq!(attr(tag, b"dyDescent"), Some(&b"0.25"[..]));
        assert_eq!(attr(tag, b"missing"), None);
        assert_eq!(
            parse_range(b"B5:$C$7"),
            Some(Merge {
                first_row: 4,
                last_row: 6,
                first_col: 1,
                last_col: 2
            })
        );
        assert_eq!(parse_cell(b"A0"), None);
        assert_eq!(unescape(b"R&amp;D &#x41;&#66; &bogus;"), "R&D AB &bogus;");
        assert_eq!(
            resolve_target("xl/", "worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(
            resolve_target("xl/", "/xl/worksheets/s.xml"),
            "xl/worksheets/s.xml"
        );
        assert_eq!(resolve_target("xl/", "../x.xml"), "x.xml");
    }

    #[test]
    fn tags_split_across_chunks_are_found() {
        let mut xml = Vec::new();
        for i in 0..20_000 {
            xml.extend_from_slice(
                format!("<row r=\"{i}\" hidden=\"{}\"><c/></row>", i % 7 == 0).as_bytes(),
            );
        }
        let mut hidden = 0;
        let mut rows = 0;
        scan_tags_read(&mut &xml[..], &[b"row"], |_, tag| {
            rows += 1;
            if attr(tag, b"hidden") == Some(b"true") {
                hidden += 1;
            }
        })
        .unwrap();
        assert_eq!((rows, hidden), (20_000, 2858));
    }
    #[test]
    fn hit_scan_matches_the_tag_walk() {
        let mut xml = Vec::new();
        xml.extend_from_slice(b"<?xml version=\"1.0\"?><x:worksheet><x:sheetData>");
        for i in 1..40_000 {
            let hidden = match i % 9 {
                0 => " hidden=\"1\"",
                4 => " x14:hidden=\"true\"",
                5 => " hidden=\"0\"",
                _ => "",
            };
            xml.extend_from_slice(
                format!("<x:row r=\"{i}\"{hidden}><x:c r=\"A{i}\" t=\"inlineStr\"><x:is><x:t>hidden=\"1\" hyperlink mergeCell</x:t></x:is></x:c></x:row>").as_bytes(),
            );
        }
        xml.extend_from_slice(b"</x:sheetData><x:mergeCells count=\"2\"><x:mergeCell ref=\"A1:B2\"/><mergeCell ref=\"C3:C9\"/></x:mergeCells>");
        xml.extend_from_slice(b"<hyperlinks><hyperlink ref=\"A2\" r:id=\"rId1\"/><x:hyperlink ref=\"B2\" r:id=\"rId2\" display=\"hyperlink\"/></hyperlinks></x:worksheet>");
        let wanted: &[&[u8]] = &[b"row", b"mergeCell", b"hyperlink"];
        let mut slow = Vec::new();
        scan_tags_read(&mut &xml[..], wanted, |name, tag| {
            if name != b"row" || matches!(attr(tag, b"hidden"), Some(b"1" | b"true")) {
                slow.push((name.to_vec(), tag.to_vec()));
            }
        })
        .unwrap();
        let mut fast = Vec::new();
        let complete = scan_hits_read(&xml[..], |name, tag| {
            if name != b"row" || matches!(attr(tag, b"hidden"), Some(b"1" | b"true")) {
                fast.push((name.to_vec(), tag.to_vec()));
            }
        })
        .unwrap();
        assert!(complete);
        slow.sort();
        fast.sort();
        assert_eq!(slow.len(), 2 * 4444 + 4);
        assert_eq!(fast, slow);
        let comment = b"<sheetData><!-- <row r=\"3\" hidden=\"1\"> --></sheetData>";
        assert!(!scan_hits_read(&comment[..], |_, _| {}).unwrap());
    }
}
