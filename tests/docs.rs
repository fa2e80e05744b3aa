//! The docs cannot rot on the command line: every `switchyard …` command shown in the
//! README and in docs/ names subcommands the binary has and flags those subcommands take
//! (checked against the binary's own `--help`). Running each command is left to the tests
//! of the commands themselves; many need data or minutes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test of the docs fails loudly"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The shell lines of a page's code blocks, with `\` continuations joined.
fn shell_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut shell = false;
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(lang) = t.strip_prefix("```") {
            in_block = !in_block;
            shell = in_block && matches!(lang.trim(), "" | "sh" | "bash" | "shell" | "console");
            continue;
        }
        if !(in_block && shell) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(t);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

/// Each `switchyard` invocation on a shell line: its arguments up to a pipe, redirect,
/// `&&`, `;`, `&` or comment.
fn invocations(line: &str) -> Vec<Vec<String>> {
    let code = line.split(" #").next().unwrap_or("");
    if code.trim_start().starts_with('#') {
        return Vec::new();
    }
    let mut out = Vec::new();
    let spaced = code.replace(';', " ; ").replace('|', " | ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let command_position = i == 0
            || matches!(
                words[i - 1],
                "|" | "&&" | ";" | "&" | "time" | "$(" | "exec"
            );
        if command_position && (w == "switchyard" || w.ends_with("/switchyard")) {
            let args: Vec<String> = words[i + 1..]
                .iter()
                .take_while(|a| !matches!(**a, "|" | ">" | "2>" | ">>" | "&&" | ";" | "&" | "<"))
                .map(|a| (*a).to_owned())
                .collect();
            i += args.len();
            out.push(args);
        }
        i += 1;
    }
    out
}

/// `switchyard <path> --help`, memoised.
fn help(path: &[String], cache: &mut BTreeMap<Vec<String>, String>) -> String {
    cache
        .entry(path.to_vec())
        .or_insert_with(|| {
            let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(path)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "switchyard {} --help failed",
                path.join(" ")
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .clone()
}

/// The subcommands a help text lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// What is wrong with one invocation, if anything.
fn check(args: &[String], cache: &mut BTreeMap<Vec<String>, String>) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    for a in args {
        let text = help(&path, cache);
        let subs = subcommands(&text);
        if subs.is_empty() || a.starts_with('-') {
            break;
        }
        if !subs.contains(a) {
            return Some(format!(
                "no subcommand {a:?} under `switchyard {}`",
                path.join(" ")
            ));
        }
        path.push(a.clone());
    }
    let text = help(&path, cache);
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap_or(a);
        let known = text
            .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
            .any(|w| {
                w == flag
                    || w.starts_with(&format!("{flag}="))
                    || w.starts_with(&format!("{flag}<"))
            });
        if !known {
            return Some(format!("`switchyard {}` takes no {flag}", path.join(" ")));
        }
    }
    None
}

#[test]
fn every_command_in_the_docs_is_one_the_binary_takes() {
    let mut cache = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for line in shell_lines(&text) {
            for args in invocations(&line) {
                checked += 1;
                if let Some(why) = check(&args, &mut cache) {
                    let name = page.file_name().unwrap().to_string_lossy().into_owned();
                    wrong.push(format!("{name}: `{}`: {why}", line.trim()));
                }
            }
        }
    }
    eprintln!("{checked} commands checked against the binary's --help");
    assert!(
        checked > 25,
        "only {checked} commands found: is the extraction broken?"
    );
    assert!(
        wrong.is_empty(),
        "commands in the docs the binary does not take:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_catches_a_wrong_flag_and_a_wrong_subcommand() {
    let mut cache = BTreeMap::new();
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        check(
            &words("serve --config x.toml --listen 127.0.0.1:0"),
            &mut cache
        ),
        None
    );
    assert!(check(&words("serve --no-such-flag"), &mut cache).is_some());
    assert!(check(&words("train nonsense --data x"), &mut cache).is_some());
    assert_eq!(
        invocations("echo hi | switchyard classify > out.jsonl # note"),
        vec![words("classify")]
    );
    assert!(invocations("cargo test -p switchyard --test house").is_empty());
}
