//! The documentation cannot drift from the code it describes:
//!
//! - `docs/CONFIGURATION.md` lists every configuration key, with its
//!   environment variable and its default as the configuration types have
//!   them; a key added, renamed or given a new default without the page
//!   following fails here, and so does a documented key that does not exist.
//! - Every ```` ```rust ```` and ```` ```js ```` block of the README, the
//!   Rust SDK's README, docs/EMBEDDING.md and docs/HOOKS.md is preceded by
//!   `<!-- checked: PATH -->` (or `PATH#NAME`, the file's region between
//!   `ANCHOR: NAME` and `ANCHOR_END: NAME`) and is that text, and each such
//!   file is compiled (a Rust example, built by `cargo test` and clippy) or
//!   run against a live hub (tests/node). sdk-js/README.md is checked the
//!   same way where it carries a marker.
//! - Every frame in `docs/PROTOCOL.md` (a JSON block's object with a
//!   `type`) is one the protocol crate decodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use switchboard_server::Config;
use switchboard_server::config::{EventsConfig, WebhookConfig};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every leaf of `value` by its dotted path (arrays are leaves).
fn flatten(value: &toml::Value, at: &str, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                flatten(inner, &path, out);
            }
        }
        leaf => {
            out.insert(at.to_owned(), leaf.clone());
        }
    }
}

/// The hooks a `<hook>` in a documented key stands for.
const HOOKS: [&str; 6] = ["connect", "join", "publish", "send", "rpc", "disconnect"];

/// The defaults, with every optional table present at its own defaults, so
/// that the keys inside `[hooks.publish]` or `[hooks.events]` have one too.
fn defaults() -> BTreeMap<String, toml::Value> {
    let mut config = Config::default();
    let hooks = &mut config.hooks;
    for hook in [
        &mut hooks.connect,
        &mut hooks.join,
        &mut hooks.publish,
        &mut hooks.send,
        &mut hooks.rpc,
        &mut hooks.disconnect,
    ] {
        *hook = Some(WebhookConfig::default());
    }
    hooks.events = Some(EventsConfig::default());
    let mut out = BTreeMap::new();
    flatten(&toml::Value::try_from(&config).expect("the configuration serializes"), "", &mut out);
    out
}

/// A documented row: key, variable, default cell.
#[derive(Debug)]
struct Row {
    key: String,
    variable: String,
    default: String,
}

/// The rows of every table in `text` whose first column is a key in
/// backticks and whose header names `key`.
fn rows(text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        if cells.first() == Some(&"key") {
            in_table = true;
            continue;
        }
        if !in_table || cells.len() < 4 || cells[0].starts_with("---") {
            continue;
        }
        let unquote = |cell: &str| cell.trim_matches('`').to_owned();
        out.push(Row {
            key: unquote(cells[0]),
            variable: unquote(cells[1]),
            default: cells[2].to_owned(),
        });
    }
    out
}

/// The keys of the table at `path` (dotted; empty for the top), as the
/// configuration types list them when refusing one they do not know.
fn fields_of(path: &str) -> Vec<String> {
    let probe = "no_such_key_anywhere = 1\n";
    let document = if path.is_empty() { probe.to_owned() } else { format!("[{path}]\n{probe}") };
    let error =
        toml::from_str::<Config>(&document).expect_err("an unknown key is refused").to_string();
    let expected = error.split("expected").nth(1).unwrap_or_else(|| panic!("`{path}`: {error}"));
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// `SWITCHBOARD_<SECTION>__<KEY>` for `section.key`.
fn variable(key: &str) -> String {
    format!("SWITCHBOARD_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// The TOML value a default cell holds: `` `4096` ``, `` `"server"` ``, `` `[]` ``.
fn value(cell: &str) -> Option<toml::Value> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    let table: toml::Table = toml::from_str(&format!("v = {inner}")).ok()?;
    table.get("v").cloned()
}

/// A TOML document setting `key` (dotted) to `example`.
fn document(key: &str, example: &str) -> String {
    match key.rsplit_once('.') {
        Some((table, leaf)) => format!("[{table}]\n{leaf} = {example}\n"),
        None => format!("{key} = {example}\n"),
    }
}

#[test]
fn configuration_md_lists_every_key_with_its_variable_and_default() {
    let defaults = defaults();
    let mut documented = BTreeMap::new();
    for row in rows(&read("docs/CONFIGURATION.md")) {
        let keys: Vec<String> = if row.key.contains("<hook>") {
            HOOKS.iter().map(|hook| row.key.replace("<hook>", hook)).collect()
        } else {
            vec![row.key.clone()]
        };
        assert_eq!(row.variable, variable(&row.key), "the variable of `{}`", row.key);
        for key in keys {
            match defaults.get(&key) {
                Some(default) => {
                    let cell = value(&row.default).unwrap_or_else(|| {
                        panic!("`{key}`: the default cell `{}` is not one TOML value", row.default)
                    });
                    assert_eq!(&cell, default, "the default of `{key}`");
                }
                None => {
                    // A key with no default: the cell says `none` and gives
                    // an example, which must be a value the key takes.
                    let example = row
                        .default
                        .strip_prefix("none, e.g. ")
                        .and_then(|rest| rest.strip_prefix('`'))
                        .and_then(|rest| rest.strip_suffix('`'))
                        .unwrap_or_else(|| {
                            panic!("`{key}` has no default: its cell must read \"none, e.g. `…`\"")
                        });
                    let parsed: Result<Config, _> = toml::from_str(&document(&key, example));
                    assert!(parsed.is_ok(), "`{key}` does not take `{example}`: {parsed:?}");
                }
            }
            documented.insert(key, ());
        }
    }
    let missing: Vec<&String> =
        defaults.keys().filter(|key| !documented.contains_key(*key)).collect();
    assert!(missing.is_empty(), "docs/CONFIGURATION.md does not list {missing:?}");
    // Keys without a default are not in `defaults`: the types name them
    // when asked for a key they do not have.
    let mut tables = vec![String::new()];
    while let Some(table) = tables.pop() {
        for field in fields_of(&table) {
            let key = if table.is_empty() { field } else { format!("{table}.{field}") };
            let prefix = format!("{key}.");
            if documented.contains_key(&key) {
                continue;
            }
            assert!(
                documented.keys().any(|documented| documented.starts_with(&prefix)),
                "docs/CONFIGURATION.md does not list `{key}`"
            );
            tables.push(key);
        }
    }
    // The flags' own variables are the environment's way to every key.
    for key in defaults.keys().filter(|key| !key.starts_with("hooks.")) {
        assert!(
            switchboard_server::env::variables().contains(&variable(key)),
            "no variable sets `{key}`"
        );
    }
}

/// Every `<!-- checked: PATH -->` of `markdown` with the fenced block after it.
fn checked_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line.strip_prefix("<!-- checked: ").and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "{path}: the marker must sit right above a fenced block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        out.push((path.to_owned(), body.join("\n")));
    }
    out
}

/// What a marker's `PATH` or `PATH#NAME` names: a whole file, or the lines
/// between `ANCHOR: NAME` and `ANCHOR_END: NAME` in it, unindented.
fn checked_text(target: &str) -> String {
    let Some((path, name)) = target.split_once('#') else { return read(target) };
    let file = read(path);
    let start = format!("ANCHOR: {name}");
    let end = format!("ANCHOR_END: {name}");
    let lines: Vec<&str> = file
        .lines()
        .skip_while(|l| !l.trim_end().ends_with(&start))
        .skip(1)
        .take_while(|l| !l.trim_end().ends_with(&end))
        .collect();
    assert!(!lines.is_empty(), "{path} has no region {name}");
    let indent =
        lines.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min();
    let indent = indent.unwrap_or(0);
    lines.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_docs_code_blocks_are_files_the_test_run_compiles_or_runs() {
    // Pages whose every Rust and JavaScript block must be checked, and pages
    // checked where they carry a marker.
    let every = ["README.md", "sdk/README.md", "docs/EMBEDDING.md", "docs/HOOKS.md"];
    for markdown in every.iter().chain(&["sdk-js/README.md"]) {
        let text = read(markdown);
        let blocks = checked_blocks(&text);
        for (target, body) in &blocks {
            let file = checked_text(target);
            assert_eq!(
                body.trim(),
                file.trim(),
                "{markdown}: the block marked {target} differs from it"
            );
        }
        if every.contains(markdown) {
            let code = text.lines().filter(|l| *l == "```rust" || *l == "```js").count();
            assert_eq!(code, blocks.len(), "{markdown}: a Rust or JS block has no checked marker");
        }
    }
}

/// The fenced blocks of `markdown` in `language`, as text.
fn blocks<'a>(markdown: &'a str, language: &str) -> Vec<Vec<&'a str>> {
    let fence = format!("```{language}");
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line == fence {
            out.push(lines.by_ref().take_while(|l| !l.starts_with("```")).collect());
        }
    }
    out
}

#[test]
fn every_frame_in_protocol_md_is_one_the_protocol_decodes() {
    use switchboard_protocol::{ClientFrame, ServerFrame};
    let page = read("docs/PROTOCOL.md");
    let mut frames = 0;
    let mut wrong = Vec::new();
    for block in blocks(&page, "json") {
        // A block holds one or more frames, some over several lines.
        let text: Vec<&str> =
            block.into_iter().filter(|l| !l.trim_start().starts_with("//")).collect();
        let text = text.join("\n");
        for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
            let value = value
                .unwrap_or_else(|e| panic!("docs/PROTOCOL.md: a block is not JSON ({e}): {text}"));
            // The HTTP API's bodies have no `type`; every frame has one.
            if !value.get("type").is_some_and(serde_json::Value::is_string) {
                continue;
            }
            let client = serde_json::from_value::<ClientFrame>(value.clone());
            let server = serde_json::from_value::<ServerFrame>(value.clone());
            // Decoded and written again, a frame must be what the page shows:
            // a misspelt optional field would be dropped on the way.
            let again = match (&client, &server) {
                (Ok(frame), _) => serde_json::to_value(frame).ok(),
                (_, Ok(frame)) => serde_json::to_value(frame).ok(),
                _ => None,
            };
            if again.as_ref() != Some(&value) {
                wrong.push(format!(
                    "{value}: as a client frame {client:?}; as a server frame {server:?}; written again {again:?}"
                ));
            }
            frames += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/PROTOCOL.md has frames the protocol refuses:\n{}",
        wrong.join("\n")
    );
    assert!(frames >= 20, "the page's frames were found ({frames})");
}

/// The commands of a shell block: continuation lines joined, comments
/// dropped, each split into words as a shell would (a `$(…)` counts as its
/// own command).
fn commands(block: &[&str]) -> Vec<Vec<String>> {
    let joined = block.join("\n").replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split(" # ").next().unwrap_or_default();
        let line = match line.split_once("$(") {
            Some((_, inner)) => inner.rsplit_once(')').map_or(inner, |(inner, _)| inner),
            None => line,
        };
        let words = shlex::split(line).unwrap_or_else(|| panic!("not shell: {line}"));
        // Leading `NAME=value` assignments set the command's environment.
        let words: Vec<String> =
            words.into_iter().skip_while(|w| w.contains('=') && !w.starts_with('-')).collect();
        if !words.is_empty() {
            out.push(words);
        }
    }
    out
}

#[test]
fn the_docs_shell_commands_are_ones_the_binaries_accept() {
    use clap::Parser as _;
    let mut checked = 0;
    for markdown in [
        "README.md",
        "docs/CONFIGURATION.md",
        "docs/EMBEDDING.md",
        "docs/SCALING.md",
        "docs/SECURITY.md",
    ] {
        let text = read(markdown);
        for block in blocks(&text, "sh") {
            for words in commands(&block) {
                // `cargo run … -p PACKAGE -- ARGS` runs PACKAGE's binary with ARGS.
                let (program, args): (&str, &[String]) = match words[0].as_str() {
                    "cargo" => {
                        let package = words
                            .iter()
                            .skip_while(|w| *w != "-p")
                            .nth(1)
                            .cloned()
                            .unwrap_or_default();
                        let args = words
                            .iter()
                            .position(|w| w == "--")
                            .map_or(&[][..], |at| &words[at + 1..]);
                        match package.as_str() {
                            "switchboard-server" => ("switchboard", args),
                            "switchboard-cli" => ("switchboard-cli", args),
                            _ => continue,
                        }
                    }
                    "switchboard" | "switchboard-cli" => (words[0].as_str(), &words[1..]),
                    _ => continue,
                };
                let argv = std::iter::once(program.to_owned()).chain(args.iter().cloned());
                let parsed = match program {
                    "switchboard" => switchboard_server::cli::Cli::try_parse_from(argv).map(drop),
                    _ => switchboard_cli::Cli::try_parse_from(argv).map(drop),
                };
                if let Err(err) = parsed {
                    panic!("{markdown}: `{}` is refused: {err}", words.join(" "));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "the docs' commands were found ({checked})");
}

#[test]
fn the_docs_toml_samples_are_configurations_the_hub_accepts() {
    for markdown in
        ["docs/CONFIGURATION.md", "docs/SECURITY.md", "docs/HOOKS.md", "docs/SCALING.md"]
    {
        for block in blocks(&read(markdown), "toml") {
            let text = block.join("\n");
            let parsed: Result<Config, _> = toml::from_str(&text);
            assert!(parsed.is_ok(), "{markdown}: a TOML block is refused: {parsed:?}\n{text}");
        }
    }
}
