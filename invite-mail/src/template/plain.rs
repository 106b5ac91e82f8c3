//! The plain form of a template: literal text, `{{ variable }}` and
//! `{% if variable %}…{% else %}…{% endif %}` over the built-in [`VARIABLES`], rendered
//! by copying text and values instead of running minijinja's machine.
//!
//! The built-in templates, and most tenants' own, use nothing else, and every email
//! the dispatcher sends renders three of them: through minijinja that was about a
//! quarter of the dispatch path's instructions per message (see `BENCHMARKS.md`,
//! Dispatch, session 7). A template with anything more (filters, loops, comments,
//! whitespace control, other names) has no plain form and renders through minijinja.
//!
//! The plain form must write exactly what minijinja writes, so it is not trusted on
//! its own: [`Plain::compile`] lexes as minijinja's lexer does under the environment's
//! syntax (`trim_blocks`, `lstrip_blocks`, `keep_trailing_newline`), and the caller
//! keeps the result only if [`Plain::agrees`] finds minijinja's output identical for
//! every truthiness of every variable a condition reads (none, empty and a value full
//! of characters to escape), every literal byte of the template being in at least one
//! of those outputs. Values are printed as minijinja prints them ([`Plain::render`]),
//! escaping as its HTML formatter does (tested against it).

use std::fmt::Write as _;

use minijinja::Value;

use super::VARIABLES;

/// Most distinct variables a plain template may test in conditions: its check renders
/// every combination of three values for each (3⁴ = 81 renders at most).
const MAX_CONDITIONS: usize = 4;

/// A template compiled to a list of steps (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Plain {
    /// Every literal piece, back to back; [`Step::Text`] holds ranges into it.
    text: String,
    steps: Vec<Step>,
    html: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Text(u32, u32),
    /// Print the variable at this index of [`VARIABLES`].
    Print(u8),
    /// Go to the step at `to` unless the variable is true.
    Unless {
        var: u8,
        to: u32,
    },
    /// Go to the step at `to`.
    Jump(u32),
}

/// Something the plain form does not support: the template renders through minijinja.
struct Unsupported;

/// The source from `pos` on, lexed a tag at a time.
struct Lexer<'s> {
    source: &'s str,
    pos: usize,
}

/// One tag of the supported kinds.
enum Tag {
    Print(u8),
    If(u8),
    Else,
    EndIf,
}

impl Plain {
    /// The plain form of `source`, or `None` when it uses anything but literal text,
    /// `{{ name }}`, `{% if name %}`, `{% else %}` and `{% endif %}` with built-in
    /// names, or tests more than a few names. `html` says whether minijinja escapes
    /// its values (the environment's `.html` templates).
    pub(super) fn compile(source: &str, html: bool) -> Option<Self> {
        let mut plain = Self {
            text: String::with_capacity(source.len()),
            steps: Vec::new(),
            html,
        };
        // Open `if`s: the index of their `Unless`, and of the `Jump` over their `else`.
        let mut open: Vec<(usize, Option<usize>)> = Vec::new();
        let mut lexer = Lexer { source, pos: 0 };
        while let Some((lead, tag)) = lexer.next().ok()? {
            plain.push_text(lead)?;
            let Some(tag) = tag else { break };
            let here = u32::try_from(plain.steps.len()).ok()?;
            match tag {
                Tag::Print(var) => plain.steps.push(Step::Print(var)),
                Tag::If(var) => {
                    open.push((plain.steps.len(), None));
                    plain.steps.push(Step::Unless { var, to: 0 });
                }
                Tag::Else => {
                    let (unless, jump) = open.last_mut()?;
                    if jump.is_some() {
                        return None;
                    }
                    *jump = Some(plain.steps.len());
                    plain.steps.push(Step::Jump(0));
                    plain.patch(*unless, here + 1);
                }
                Tag::EndIf => match open.pop()? {
                    (unless, None) => plain.patch(unless, here),
                    (_, Some(jump)) => plain.patch(jump, here),
                },
            }
        }
        (open.is_empty() && plain.conditions().len() <= MAX_CONDITIONS).then_some(plain)
    }

    fn push_text(&mut self, text: &str) -> Option<()> {
        if !text.is_empty() {
            let start = u32::try_from(self.text.len()).ok()?;
            self.text.push_str(text);
            let end = u32::try_from(self.text.len()).ok()?;
            self.steps.push(Step::Text(start, end));
        }
        Some(())
    }

    fn patch(&mut self, at: usize, target: u32) {
        match &mut self.steps[at] {
            Step::Unless { to, .. } | Step::Jump(to) => *to = target,
            Step::Text(..) | Step::Print(_) => unreachable!("only jumps are patched"),
        }
    }

    /// The variables conditions read, each once.
    fn conditions(&self) -> Vec<u8> {
        let mut vars: Vec<u8> = self
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Unless { var, .. } => Some(*var),
                _ => None,
            })
            .collect();
        vars.sort_unstable();
        vars.dedup();
        vars
    }

    /// Appends the template rendered with `values` (in [`VARIABLES`] order) to `out`.
    pub(super) fn render(&self, values: &[Value], out: &mut String) {
        // Room for the text and every printed value, with some for escapes (a link's
        // slashes), so the output is not copied as it grows.
        let printed: usize = self
            .steps
            .iter()
            .map(|step| match step {
                Step::Print(var) => values[usize::from(*var)].as_str().map_or(4, str::len),
                _ => 0,
            })
            .sum();
        out.reserve(self.text.len() + printed + printed / 4);
        let mut at = 0;
        while let Some(step) = self.steps.get(at) {
            at += 1;
            match *step {
                Step::Text(start, end) => out.push_str(&self.text[start as usize..end as usize]),
                Step::Print(var) => self.print(&values[usize::from(var)], out),
                Step::Unless { var, to } => {
                    if !values[usize::from(var)].is_true() {
                        at = to as usize;
                    }
                }
                Step::Jump(to) => at = to as usize,
            }
        }
    }

    /// A value as minijinja's default formatter writes it: strings as they are, or
    /// HTML-escaped in an HTML template unless marked safe; anything else (none) by
    /// its display form.
    fn print(&self, value: &Value, out: &mut String) {
        match value.as_str() {
            Some(s) if self.html && !value.is_safe() => escape_html(s, out),
            Some(s) => out.push_str(s),
            // Writing into a String cannot fail.
            None => drop(write!(out, "{value}")),
        }
    }

    /// Whether this plain form writes what minijinja's `render` writes (given as a
    /// closure over the values), for every combination of none, `""` and a value to
    /// escape for each variable a condition reads, the others set to such values.
    pub(super) fn agrees(
        &self,
        mut minijinja: impl FnMut(&[Value; VARIABLES.len()]) -> Result<String, minijinja::Error>,
    ) -> bool {
        let conditions = self.conditions();
        let samples = [
            |_: &str| Value::from(()),
            |_: &str| Value::from(""),
            |name: &str| Value::from(format!("{name}: <a href=\"/x?a=1&b='2'\">é</a>\r\n{{{{")),
        ];
        let combinations = samples
            .len()
            .pow(u32::try_from(conditions.len()).unwrap_or(u32::MAX));
        (0..combinations).all(|mut n| {
            let values: [Value; VARIABLES.len()] = std::array::from_fn(|i| {
                let pick = if conditions.iter().any(|&c| usize::from(c) == i) {
                    let pick = n % samples.len();
                    n /= samples.len();
                    pick
                } else {
                    samples.len() - 1
                };
                samples[pick](VARIABLES[i])
            });
            let mut plain = String::new();
            self.render(&values, &mut plain);
            minijinja(&values).is_ok_and(|expected| expected == plain)
        })
    }
}

impl<'s> Lexer<'s> {
    /// The literal text up to the next tag, and the tag (`None` after the last one);
    /// `Ok(None)` once the source is used up.
    fn next(&mut self) -> Result<Option<(&'s str, Option<Tag>)>, Unsupported> {
        let rest = &self.source[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        let Some((start, block)) = find_tag(rest)? else {
            self.pos = self.source.len();
            return Ok(Some((rest, None)));
        };
        let mut lead = &rest[..start];
        if block && starts_line(&self.source[..self.pos + start]) {
            lead = lstrip_block(lead);
        }
        self.pos += start + 2;
        let tag = if block { self.block() } else { self.variable() };
        Ok(Some((lead, Some(tag.ok_or(Unsupported)?))))
    }

    /// `{{ name }}` after its `{{`.
    fn variable(&mut self) -> Option<Tag> {
        self.skip_whitespace();
        let var = self.name()?;
        self.skip_whitespace();
        self.expect("}}")?;
        Some(Tag::Print(var))
    }

    /// `{% if name %}`, `{% else %}` or `{% endif %}` after its `{%`, and the line
    /// break after it (`trim_blocks`).
    fn block(&mut self) -> Option<Tag> {
        self.skip_whitespace();
        let tag = match self.word()? {
            "if" => {
                if self.skip_whitespace() == 0 {
                    return None;
                }
                Tag::If(self.name()?)
            }
            "else" => Tag::Else,
            "endif" => Tag::EndIf,
            _ => return None,
        };
        self.skip_whitespace();
        self.expect("%}")?;
        // minijinja's `trim_blocks`: a CR, then an LF, each if present.
        let bytes = self.source.as_bytes();
        if bytes.get(self.pos) == Some(&b'\r') {
            self.pos += 1;
        }
        if bytes.get(self.pos) == Some(&b'\n') {
            self.pos += 1;
        }
        Some(tag)
    }

    /// Skips ASCII whitespace (minijinja's rule inside tags); returns how much.
    fn skip_whitespace(&mut self) -> usize {
        let skipped = self.source.as_bytes()[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.pos += skipped;
        skipped
    }

    /// An ASCII identifier, which must end at whitespace or a closing delimiter
    /// (anything else, like `.`, `|`, `(` or a non-ASCII letter, is an expression the
    /// plain form does not support).
    fn word(&mut self) -> Option<&'s str> {
        let bytes = &self.source.as_bytes()[self.pos..];
        let first = *bytes.first()?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        let len = bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        match bytes.get(len) {
            Some(b) if b.is_ascii_whitespace() || *b == b'}' || *b == b'%' => {}
            _ => return None,
        }
        let word = &self.source[self.pos..self.pos + len];
        self.pos += len;
        Some(word)
    }

    /// A built-in variable's name, as its index in [`VARIABLES`].
    fn name(&mut self) -> Option<u8> {
        let word = self.word()?;
        let index = VARIABLES.iter().position(|v| *v == word)?;
        u8::try_from(index).ok()
    }

    fn expect(&mut self, token: &str) -> Option<()> {
        self.source[self.pos..].starts_with(token).then(|| {
            self.pos += token.len();
        })
    }
}

/// The next `{{` or `{%` in `text` (`true` for a block), as minijinja's lexer finds
/// start markers; `Ok(None)` when there is none. Comments and markers with whitespace
/// control (`{{-`, `{%+`, …) are not supported.
fn find_tag(text: &str) -> Result<Option<(usize, bool)>, Unsupported> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'{', &bytes[from..]) {
        let at = from + i;
        let block = match bytes.get(at + 1) {
            Some(b'{') => false,
            Some(b'%') => true,
            Some(b'#') => return Err(Unsupported),
            _ => {
                from = at + 1;
                continue;
            }
        };
        if matches!(bytes.get(at + 2), Some(b'-' | b'+')) {
            return Err(Unsupported);
        }
        return Ok(Some((at, block)));
    }
    Ok(None)
}

/// Whether a block tag after `prefix` starts its line (only whitespace since the last
/// line break, or since the start): minijinja's `lstrip_blocks` condition.
fn starts_line(prefix: &str) -> bool {
    for c in prefix.chars().rev() {
        if c == '\r' || c == '\n' {
            return true;
        }
        if !c.is_whitespace() {
            return false;
        }
    }
    true
}

/// The text before a block tag with its line's indentation removed, as minijinja's
/// `lstrip_blocks` removes it: only when what remains is empty or ends with a line
/// feed.
fn lstrip_block(text: &str) -> &str {
    let trimmed = text.trim_end_matches(|c: char| c.is_whitespace() && c != '\r' && c != '\n');
    if trimmed.is_empty() || trimmed.ends_with('\n') {
        trimmed
    } else {
        text
    }
}

/// The bytes minijinja's HTML escaping replaces, each with its entity.
const fn entity(b: u8) -> Option<&'static str> {
    match b {
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'&' => Some("&amp;"),
        b'"' => Some("&quot;"),
        b'\'' => Some("&#x27;"),
        b'/' => Some("&#x2f;"),
        _ => None,
    }
}

/// Which bytes [`entity`] replaces, as a table: one load per byte of a value.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b: u8 = 0;
    loop {
        table[b as usize] = entity(b).is_some();
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

/// `s` HTML-escaped as minijinja escapes it: `<`, `>`, `&`, `"`, `'` and `/`.
fn escape_html(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if ESCAPED[usize::from(b)]
            && let Some(entity) = entity(b)
        {
            out.push_str(&s[start..i]);
            out.push_str(entity);
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use minijinja::{AutoEscape, Environment};
    use proptest::prelude::*;

    use super::*;

    fn minijinja_escape(s: &str) -> String {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.render_str("{{ s }}", minijinja::context! { s })
            .expect("renders")
    }

    proptest! {
        #[test]
        fn escapes_as_minijinja_does(s in "[<>&\"'/a-zé \n]{0,40}|\\PC{0,40}") {
            let mut ours = String::new();
            escape_html(&s, &mut ours);
            prop_assert_eq!(ours, minijinja_escape(&s));
        }
    }

    #[test]
    fn supported_sources_compile_and_the_rest_do_not() {
        for source in [
            "",
            "plain text { with } braces %}",
            "Hi {{ recipient_name }}!",
            "{%if message%}{{message}}{%else%}none{%endif%}",
            "  {% if message %}\n  x\n  {% endif %}\r\ny",
        ] {
            assert!(Plain::compile(source, false).is_some(), "{source:?}");
        }
        for source in [
            "{# a comment #}",
            "{{- tenant_name }}",
            "{{ tenant_name -}}",
            "{%- if message %}{% endif %}",
            "{% if message -%}{% endif %}",
            "{{ tenant_name | upper }}",
            "{{ tenant_name.x }}",
            "{{ unknown }}",
            "{{ tenant_name ~ role }}",
            "{% if not message %}{% endif %}",
            "{% if message %}",
            "{% endif %}",
            "{% if message %}{% else %}{% else %}{% endif %}",
            "{% for x in range(3) %}{% endfor %}",
            "{% raw %}{{ x }}{% endraw %}",
            "{% if message %}{% elif role %}{% endif %}",
            "{% if a %}{% if b %}{% if c %}{% if d %}{% if e %}",
            "{% if tenant_name %}{% if tenant_id %}{% if role %}{% if message %}\
             {% if kind %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}",
            "{{ tenant_name }",
        ] {
            assert!(Plain::compile(source, false).is_none(), "{source:?}");
        }
    }

    #[test]
    fn html_values_are_escaped_and_text_ones_are_not() {
        let values: Vec<Value> = VARIABLES.iter().map(|_| Value::from("<b>&'/")).collect();
        let render = |html| {
            let mut out = String::new();
            Plain::compile("{{ message }}", html)
                .expect("compiles")
                .render(&values, &mut out);
            out
        };
        assert_eq!(render(true), "&lt;b&gt;&amp;&#x27;&#x2f;");
        assert_eq!(render(false), "<b>&'/");
    }
}
