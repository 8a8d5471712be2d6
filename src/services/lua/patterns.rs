//! Lua's string patterns for `string.find`, `match`, `gmatch` and `gsub`, matched here rather
//! than in Lua's C library so that the work is counted. Lua's matcher backtracks without bound
//! and the instruction hook cannot stop it (`string.rep('a', 300):find(string.rep('a*', 4) ..
//! 'b')` runs for minutes); this one follows Lua 5.4's `lstrlib.c` step for step and looks at the
//! call's [`Budget`] every few thousand steps. Plain searches use a linear-time substring search;
//! what `gsub` builds counts against the VM's memory limit.

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::sandbox::Budget;

/// Captures a pattern may hold (Lua's `LUA_MAXCAPTURES`).
const MAX_CAPTURES: usize = 32;
/// Nesting of the matcher's recursion (Lua's `MAXCCALLS`).
const MAX_DEPTH: u32 = 200;
/// Matcher steps between two looks at the budget.
const CHECK_EVERY: u32 = 4096;
const CAP_UNFINISHED: isize = -1;
const CAP_POSITION: isize = -2;
const ESC: u8 = b'%';
const SPECIALS: &[u8] = b"^$*+?.([%-";

fn pattern_error(message: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(message.into())
}

/// Installs the four functions in `string` (and so in every string's methods).
pub(super) fn install(lua: &Lua, string: &Table, budget: &Budget) -> mlua::Result<()> {
    let find_budget = budget.clone();
    string.raw_set(
        "find",
        lua.create_function(
            move |lua, (s, p, init, plain): (mlua::LuaString, mlua::LuaString, Option<i64>, Value)| {
                let plain = !matches!(plain, Value::Nil | Value::Boolean(false));
                find_aux(lua, &find_budget, &s, &p, init, plain, true)
            },
        )?,
    )?;
    let match_budget = budget.clone();
    string.raw_set(
        "match",
        lua.create_function(
            move |lua, (s, p, init): (mlua::LuaString, mlua::LuaString, Option<i64>)| {
                find_aux(lua, &match_budget, &s, &p, init, false, false)
            },
        )?,
    )?;
    let gmatch_budget = budget.clone();
    string.raw_set(
        "gmatch",
        lua.create_function(
            move |lua, (s, p, init): (mlua::LuaString, mlua::LuaString, Option<i64>)| {
                gmatch(lua, gmatch_budget.clone(), s, p, init)
            },
        )?,
    )?;
    let gsub_budget = budget.clone();
    string.raw_set(
        "gsub",
        lua.create_function(
            move |lua, (s, p, repl, max): (mlua::LuaString, mlua::LuaString, Value, Option<i64>)| {
                gsub(lua, &gsub_budget, s, &p, repl, max)
            },
        )?,
    )?;
    Ok(())
}

/// A 1-based, possibly negative, start position as an offset (Lua's `posrelatI`, minus one).
fn start_offset(pos: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let pos = if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos < -len_i {
        1
    } else {
        // -len <= pos < 0
        len - usize::try_from(-pos).unwrap_or(0) + 1
    };
    pos - 1
}

/// `string.find` and `string.match` (Lua's `str_find_aux`).
fn find_aux(
    lua: &Lua,
    budget: &Budget,
    s: &mlua::LuaString,
    p: &mlua::LuaString,
    init: Option<i64>,
    plain: bool,
    find: bool,
) -> mlua::Result<MultiValue> {
    let src = s.as_bytes();
    let pat = p.as_bytes();
    let init = start_offset(init.unwrap_or(1), src.len());
    if init > src.len() {
        return Ok(MultiValue::from_vec(vec![Value::Nil]));
    }
    if find && (plain || !pat.iter().any(|b| SPECIALS.contains(b))) {
        return Ok(match memchr::memmem::find(&src[init..], &pat) {
            Some(at) => MultiValue::from_vec(vec![
                Value::Integer(position(init + at + 1)),
                Value::Integer(position(init + at + pat.len())),
            ]),
            None => MultiValue::from_vec(vec![Value::Nil]),
        });
    }
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    let mut matcher = Matcher::new(&src, pat, budget);
    let mut start = init;
    loop {
        matcher.reset();
        if let Some(end) = matcher.do_match(start, 0)? {
            return if find {
                let mut values = vec![
                    Value::Integer(position(start + 1)),
                    Value::Integer(position(end)),
                ];
                values.extend(matcher.captures(lua, None)?);
                Ok(MultiValue::from_vec(values))
            } else {
                Ok(MultiValue::from_vec(
                    matcher.captures(lua, Some((start, end)))?,
                ))
            };
        }
        if anchor || start >= src.len() {
            break;
        }
        start += 1;
    }
    Ok(MultiValue::from_vec(vec![Value::Nil]))
}

fn position(offset: usize) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// `string.gmatch`: an iterator over the matches (Lua's `gmatch` and `gmatch_aux`).
fn gmatch(
    lua: &Lua,
    budget: Budget,
    s: mlua::LuaString,
    p: mlua::LuaString,
    init: Option<i64>,
) -> mlua::Result<Function> {
    let len = s.as_bytes().len();
    let mut next = start_offset(init.unwrap_or(1), len).min(len + 1);
    let mut last_match: Option<usize> = None;
    lua.create_function_mut(move |lua, ()| {
        let src = s.as_bytes();
        let pat = p.as_bytes();
        let mut matcher = Matcher::new(&src, &pat, &budget);
        let mut start = next;
        while start <= src.len() {
            matcher.reset();
            if let Some(end) = matcher.do_match(start, 0)?
                && Some(end) != last_match
            {
                next = end;
                last_match = Some(end);
                return Ok(MultiValue::from_vec(
                    matcher.captures(lua, Some((start, end)))?,
                ));
            }
            start += 1;
        }
        Ok(MultiValue::new())
    })
}

/// What `gsub` replaces a match with.
enum Replacement {
    Text(mlua::LuaString),
    Table(Table),
    Function(Function),
}

/// A result built outside the VM, held to the VM's memory limit.
struct Output {
    bytes: Vec<u8>,
    max: usize,
}

impl Output {
    fn push(&mut self, bytes: &[u8]) -> mlua::Result<()> {
        if self.bytes.len() + bytes.len() > self.max {
            return Err(mlua::Error::MemoryError("not enough memory".into()));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
}

/// `string.gsub` (Lua's `str_gsub`).
fn gsub(
    lua: &Lua,
    budget: &Budget,
    s: mlua::LuaString,
    p: &mlua::LuaString,
    repl: Value,
    max: Option<i64>,
) -> mlua::Result<MultiValue> {
    let replacement = match repl {
        Value::Table(table) => Replacement::Table(table),
        Value::Function(function) => Replacement::Function(function),
        other @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            Replacement::Text(lua.coerce_string(other)?.unwrap_or(lua.create_string("")?))
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                other.type_name()
            )));
        }
    };
    let src = s.as_bytes();
    let pat = p.as_bytes();
    let max = max.unwrap_or(position(src.len() + 1));
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    let mut matcher = Matcher::new(&src, pat, budget);
    let mut out = Output {
        bytes: Vec::new(),
        max: budget.max_bytes,
    };
    let mut at = 0;
    let mut last_match = None;
    let mut count = 0i64;
    let mut changed = false;
    while count < max {
        matcher.reset();
        match matcher.do_match(at, 0)? {
            Some(end) if Some(end) != last_match => {
                count += 1;
                changed |= matcher.replace(lua, &mut out, at, end, &replacement)?;
                at = end;
                last_match = Some(end);
            }
            _ if at < src.len() => {
                out.push(&src[at..=at])?;
                at += 1;
            }
            _ => break,
        }
        if anchor {
            break;
        }
    }
    let result = if changed {
        out.push(&src[at..])?;
        Value::String(lua.create_string(&out.bytes)?)
    } else {
        Value::String(s.clone())
    };
    Ok(MultiValue::from_vec(vec![result, Value::Integer(count)]))
}

/// A capture: a piece of the subject, or a position (`()`), 1-based.
enum Capture {
    Text(usize, usize),
    Position(usize),
}

/// The state of one match (Lua's `MatchState`).
struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    capture: [(usize, isize); MAX_CAPTURES],
    depth: u32,
    steps: u32,
    budget: &'a Budget,
}

impl<'a> Matcher<'a> {
    fn new(src: &'a [u8], pat: &'a [u8], budget: &'a Budget) -> Matcher<'a> {
        Matcher {
            src,
            pat,
            level: 0,
            capture: [(0, 0); MAX_CAPTURES],
            depth: MAX_DEPTH,
            steps: 0,
            budget,
        }
    }

    fn reset(&mut self) {
        self.level = 0;
        self.depth = MAX_DEPTH;
    }

    /// Counts `n` steps; every [`CHECK_EVERY`] of them, the budget decides whether to go on.
    fn tick(&mut self, n: usize) -> mlua::Result<()> {
        self.steps = self
            .steps
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if self.steps >= CHECK_EVERY {
            self.steps = 0;
            self.budget.check()?;
        }
        Ok(())
    }

    /// The pattern byte at `i`; past the end, 0 (Lua's patterns end with a NUL).
    fn p(&self, i: usize) -> u8 {
        self.pat.get(i).copied().unwrap_or(0)
    }

    /// The subject byte at `i`; past the end, 0.
    fn s(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    fn class_end(&self, mut p: usize) -> mlua::Result<usize> {
        let c = self.p(p);
        p += 1;
        match c {
            ESC => {
                if p >= self.pat.len() {
                    return Err(pattern_error("malformed pattern (ends with '%')"));
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.p(p) == b'^' {
                    p += 1;
                }
                loop {
                    if p >= self.pat.len() {
                        return Err(pattern_error("malformed pattern (missing ']')"));
                    }
                    let c = self.pat[p];
                    p += 1;
                    if c == ESC && p < self.pat.len() {
                        p += 1;
                    }
                    if self.p(p) == b']' {
                        return Ok(p + 1);
                    }
                }
            }
            _ => Ok(p),
        }
    }

    /// Whether `c` is in `[...]` from `p` (the `[`) to `ec` (the `]`).
    fn match_bracket_class(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut found = true;
        if self.p(p + 1) == b'^' {
            found = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !found;
            }
            if self.p(p) == ESC {
                p += 1;
                if match_class(c, self.p(p)) {
                    return found;
                }
            } else if self.p(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.p(p - 2) <= c && c <= self.p(p) {
                    return found;
                }
            } else if self.p(p) == c {
                return found;
            }
        }
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.p(p) {
            b'.' => true,
            ESC => match_class(c, self.p(p + 1)),
            b'[' => self.match_bracket_class(c, p, ep - 1),
            other => other == c,
        }
    }

    fn match_balance(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        if p + 1 >= self.pat.len() {
            return Err(pattern_error(
                "malformed pattern (missing arguments to '%b')",
            ));
        }
        if self.s(s) != self.pat[p] || s >= self.src.len() {
            return Ok(None);
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        let mut depth = 1usize;
        for at in s + 1..self.src.len() {
            self.tick(1)?;
            let c = self.src[at];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(at + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> mlua::Result<Option<usize>> {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            i += 1;
            self.tick(1)?;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> mlua::Result<Option<usize>> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if !self.single_match(s, p, ep) {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: isize) -> mlua::Result<Option<usize>> {
        if self.level >= MAX_CAPTURES {
            return Err(pattern_error("too many captures"));
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let end = self.do_match(s, p)?;
        if end.is_none() {
            self.level -= 1;
        }
        Ok(end)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        let Some(open) = (0..self.level)
            .rev()
            .find(|&l| self.capture[l].1 == CAP_UNFINISHED)
        else {
            return Err(pattern_error("invalid pattern capture"));
        };
        self.capture[open].1 = isize::try_from(s - self.capture[open].0).unwrap_or(isize::MAX);
        let end = self.do_match(s, p)?;
        if end.is_none() {
            self.capture[open].1 = CAP_UNFINISHED;
        }
        Ok(end)
    }

    /// `%1`…`%9` in a pattern: the same text as that capture again.
    fn match_capture(&mut self, s: usize, digit: u8) -> mlua::Result<Option<usize>> {
        let index = usize::from(digit.wrapping_sub(b'1'));
        if digit < b'1' || index >= self.level || self.capture[index].1 == CAP_UNFINISHED {
            return Err(pattern_error(format!(
                "invalid capture index %{}",
                i32::from(digit) - i32::from(b'0')
            )));
        }
        let (init, len) = self.capture[index];
        // A position capture has no text; Lua compares it as a huge length, which never fits.
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        self.tick(len / 64 + 1)?;
        if self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len] {
            Ok(Some(s + len))
        } else {
            Ok(None)
        }
    }

    /// Where the match of the pattern from `p` on, at subject offset `s`, ends (Lua's `match`).
    fn do_match(&mut self, s: usize, p: usize) -> mlua::Result<Option<usize>> {
        if self.depth == 0 {
            return Err(pattern_error("pattern too complex"));
        }
        self.depth -= 1;
        let end = self.match_here(s, p);
        self.depth += 1;
        end
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> mlua::Result<Option<usize>> {
        loop {
            self.tick(1)?;
            if p == self.pat.len() {
                return Ok(Some(s));
            }
            match self.pat[p] {
                b'(' => {
                    return if self.p(p + 1) == b')' {
                        self.start_capture(s, p + 2, CAP_POSITION)
                    } else {
                        self.start_capture(s, p + 1, CAP_UNFINISHED)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESC if self.p(p + 1) == b'b' => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                    }
                    None => return Ok(None),
                },
                ESC if self.p(p + 1) == b'f' => {
                    p += 2;
                    if self.p(p) != b'[' {
                        return Err(pattern_error("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    if !self.match_bracket_class(previous, p, ep - 1)
                        && self.match_bracket_class(self.s(s), p, ep - 1)
                    {
                        p = ep;
                    } else {
                        return Ok(None);
                    }
                }
                ESC if self.p(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.p(p + 1))? {
                        Some(end) => {
                            s = end;
                            p += 2;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let suffix = self.p(ep);
                    if !self.single_match(s, p, ep) {
                        if matches!(suffix, b'*' | b'?' | b'-') {
                            p = ep + 1;
                            continue;
                        }
                        return Ok(None);
                    }
                    match suffix {
                        b'?' => {
                            if let Some(end) = self.do_match(s + 1, ep + 1)? {
                                return Ok(Some(end));
                            }
                            p = ep + 1;
                        }
                        b'+' => return self.max_expand(s + 1, p, ep),
                        b'*' => return self.max_expand(s, p, ep),
                        b'-' => return self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        }
    }

    /// Capture `i`; with no captures, capture 0 is the whole match `whole`.
    fn capture(&self, i: usize, whole: (usize, usize)) -> mlua::Result<Capture> {
        if i >= self.level {
            if i != 0 {
                return Err(pattern_error(format!("invalid capture index %{}", i + 1)));
            }
            return Ok(Capture::Text(whole.0, whole.1));
        }
        let (init, len) = self.capture[i];
        match len {
            CAP_UNFINISHED => Err(pattern_error("unfinished capture")),
            CAP_POSITION => Ok(Capture::Position(init + 1)),
            len => Ok(Capture::Text(init, init + len.unsigned_abs())),
        }
    }

    fn capture_value(&self, lua: &Lua, i: usize, whole: (usize, usize)) -> mlua::Result<Value> {
        Ok(match self.capture(i, whole)? {
            Capture::Text(from, to) => Value::String(lua.create_string(&self.src[from..to])?),
            Capture::Position(at) => Value::Integer(position(at)),
        })
    }

    /// Every capture as a value; with none, the whole match (when given).
    fn captures(&self, lua: &Lua, whole: Option<(usize, usize)>) -> mlua::Result<Vec<Value>> {
        let count = if self.level == 0 && whole.is_some() {
            1
        } else {
            self.level
        };
        let whole = whole.unwrap_or((0, 0));
        (0..count)
            .map(|i| self.capture_value(lua, i, whole))
            .collect()
    }

    /// Adds what replaces the match `from..to` to `out` (Lua's `add_value`); whether the
    /// subject changed (a replacement of `nil` or `false` keeps the match).
    fn replace(
        &self,
        lua: &Lua,
        out: &mut Output,
        from: usize,
        to: usize,
        replacement: &Replacement,
    ) -> mlua::Result<bool> {
        let value = match replacement {
            Replacement::Text(text) => {
                self.add_text(out, &text.as_bytes(), (from, to))?;
                return Ok(true);
            }
            Replacement::Table(table) => {
                table.get::<Value>(self.capture_value(lua, 0, (from, to))?)?
            }
            Replacement::Function(function) => function
                .call::<Value>(MultiValue::from_vec(self.captures(lua, Some((from, to)))?))?,
        };
        match value {
            Value::Nil | Value::Boolean(false) => {
                out.push(&self.src[from..to])?;
                Ok(false)
            }
            text @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
                if let Some(text) = lua.coerce_string(text)? {
                    out.push(&text.as_bytes())?;
                }
                Ok(true)
            }
            other => Err(mlua::Error::runtime(format!(
                "invalid replacement value (a {})",
                other.type_name()
            ))),
        }
    }

    /// A replacement string, with `%0`…`%9` and `%%` (Lua's `add_s`).
    fn add_text(&self, out: &mut Output, text: &[u8], whole: (usize, usize)) -> mlua::Result<()> {
        let mut rest = text;
        while let Some(at) = memchr::memchr(ESC, rest) {
            out.push(&rest[..at])?;
            let code = rest.get(at + 1).copied().unwrap_or(0);
            match code {
                ESC => out.push(&[ESC])?,
                b'0' => out.push(&self.src[whole.0..whole.1])?,
                b'1'..=b'9' => match self.capture(usize::from(code - b'1'), whole)? {
                    Capture::Text(from, to) => out.push(&self.src[from..to])?,
                    Capture::Position(at) => out.push(at.to_string().as_bytes())?,
                },
                _ => {
                    return Err(mlua::Error::runtime(
                        "invalid use of '%' in replacement string",
                    ));
                }
            }
            rest = &rest[at + 2..];
        }
        out.push(rest)
    }
}

/// Whether `c` is in class `%cl` (C locale, as Lua's `match_class`).
fn match_class(c: u8, class: u8) -> bool {
    let inside = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace, with the vertical tab Rust's `is_ascii_whitespace` leaves out.
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return class == c,
    };
    if class.is_ascii_lowercase() {
        inside
    } else {
        !inside
    }
}

#[cfg(test)]
mod tests {
    //! The matcher against Lua's own: every function over a corpus of subjects, patterns and
    //! arguments must give what the C library gives, errors included.

    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use mlua::{Lua, LuaOptions, StdLib};

    use super::super::sandbox::Budget;

    const COMPARE: &str = r##"
local ours = ...
local c = { find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub }
local subjects = { "", "a", "hello world", "  trim me  ", "key=val; k2=v2", "2024-01-15T10:20:30Z",
  "f(a(b)c)d(e", "THE (quick) fox", "aaa", "a.b*c+d?e", "x\0y\0z", "\195\160\195\169 \195\188",
  "one two  three", "[[nested]]", "%d%%", "\t\v\f\r\n end", "ab12CD-_~" }
local patterns = { "", "a", "o w", "l+", "l*", "l-", "l?", ".", ".-", "^h", "d$", "^$", "$", "^",
  "(%w+)=(%w+)", "^%s*(.-)%s*$", "(%d+)-(%d+)-(%d+)", "()ll()", "%f[%a]%a+", "%f[%A]", "%f[%z]",
  "%b()", "%b[]", "(a)%1", "(a*(.)%w(%s*))", "[%a_][%w_]*", "[^%s]+", "[a-f]+", "[%]]", "[]]",
  "[^]]", "%.", "%%", "%", "[a", "(", ")", "%b", "%b(", "%f", "%fa", "%1", "%0", "(()", "(a)%2",
  "x%zy", "%z", "[%z]", "%u%l*", "%S+", "%c", "%p+", "%x+", "%g+", "%A+", "%W", "%s+", "a-b",
  "[a-]", "[-a]", "[a-%]", "(h)(e)(l)(l)(o)", "\0", "y%z", "[%w%p]+$", "^(%a+)", "(.)(.)%2%1",
  "e?n?d", "%d+%.?%d*", "%$(%w+)", "[^%d%s]+" }
local replacements = { "<%0>", "%1", "%%", "x", "%2", "%", "%x", 5, 2.5,
  { hello = "HI", a = false, l = 7, o = {} },
  function(...) if select("#", ...) > 1 then return table.concat({ ... }, ",") end return nil end,
  function(s) if s == "l" then return true end return s end }
local inits = { false, 1, 3, -2, 0, 100, -100 }

local function same(a, b, what)
  if a.n ~= b.n then error(what .. ": " .. a.n .. " values against " .. b.n, 0) end
  if a[1] == false and b[1] == false then
    -- Both failed: ours says what Lua says (which may carry the caller's position).
    local expected = tostring(a[2]):gsub("^.-:%d+: ", "")
    if not tostring(b[2]):find(expected, 1, true) then
      error(what .. ": Lua says " .. tostring(a[2]) .. ", here " .. tostring(b[2]), 0)
    end
    return
  end
  for i = 1, a.n do
    if a[i] ~= b[i] or math.type(a[i]) ~= math.type(b[i]) then
      error(what .. ": value " .. i .. " is " .. tostring(a[i]) .. " in Lua, " .. tostring(b[i]) .. " here", 0)
    end
  end
end
local function all(gmatch, s, p, init)
  local out = {}
  for a, b, c in gmatch(s, p, init) do
    out[#out + 1] = tostring(a) .. "|" .. tostring(b) .. "|" .. tostring(c)
    if #out > 100 then break end
  end
  return table.concat(out, ";")
end
local checked = 0
for _, s in ipairs(subjects) do
  for _, p in ipairs(patterns) do
    local what = string.format("%q ~ %q", s, p)
    for _, init in ipairs(inits) do
      local i = init or nil
      same(table.pack(pcall(c.find, s, p, i)), table.pack(pcall(ours.find, s, p, i)), "find " .. what .. " " .. tostring(i))
      same(table.pack(pcall(c.find, s, p, i, true)), table.pack(pcall(ours.find, s, p, i, true)), "plain find " .. what)
      same(table.pack(pcall(c.match, s, p, i)), table.pack(pcall(ours.match, s, p, i)), "match " .. what .. " " .. tostring(i))
      same(table.pack(pcall(all, c.gmatch, s, p, i)), table.pack(pcall(all, ours.gmatch, s, p, i)), "gmatch " .. what)
      checked = checked + 4
    end
    for r, repl in ipairs(replacements) do
      for _, n in ipairs({ false, 1, 0 }) do
        local max = n or nil
        same(table.pack(pcall(c.gsub, s, p, repl, max)), table.pack(pcall(ours.gsub, s, p, repl, max)), "gsub " .. what .. " with " .. r)
        checked = checked + 1
      end
    end
  end
end
return checked
"##;

    fn budget(timeout: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + timeout,
            timed_out: Arc::new(AtomicBool::new(false)),
            stopping: Arc::new(AtomicBool::new(false)),
            cancelled: crate::store::deadline::Stopping::default(),
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn every_function_matches_as_lua_does() {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH,
            LuaOptions::new(),
        )
        .unwrap();
        let ours = lua.create_table().unwrap();
        super::install(&lua, &ours, &budget(Duration::from_secs(60))).unwrap();
        let checked: i64 = lua.load(COMPARE).call(ours).unwrap();
        assert!(checked > 40_000, "{checked}");
    }

    #[test]
    fn backtracking_stops_at_the_deadline() {
        let lua = Lua::new_with(StdLib::STRING, LuaOptions::new()).unwrap();
        let ours = lua.create_table().unwrap();
        let budget = budget(Duration::from_millis(200));
        super::install(&lua, &ours, &budget).unwrap();
        let started = Instant::now();
        let result = lua
            .load("local ours = ... return ours.find(string.rep('a', 300), string.rep('a*', 4) .. 'b')")
            .call::<mlua::Value>(ours);
        assert!(result.is_err());
        assert!(budget.timed_out.load(std::sync::atomic::Ordering::Relaxed));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
