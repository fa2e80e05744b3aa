//! Which task class each benchmark belongs to. The table is the documentation: keep it in
//! step with `datasets/README.md`.

use switchyard_core::TaskClass;

/// Benchmark name (lower-cased, `-` and `_` equivalent) → task class.
const BENCHMARKS: &[(&str, TaskClass)] = &[
    ("mbpp", TaskClass::Code),
    ("human_eval", TaskClass::Code),
    ("humaneval", TaskClass::Code),
    ("javascript", TaskClass::Code),
    ("gsm8k", TaskClass::Math),
    ("math", TaskClass::Math),
    ("math_prealgebra", TaskClass::Math),
    ("agentverse_mgsm", TaskClass::Math),
    ("winogrande", TaskClass::Reasoning),
    ("commonsense_qa", TaskClass::Reasoning),
    ("agentverse_logicgrid", TaskClass::Reasoning),
    // ARC and OpenBookQA are grade-school science exam questions: subject knowledge, the
    // same kind of prompt as MMLU's science sections, so they share MMLU's class.
    ("arc_challenge", TaskClass::Knowledge),
    ("arc_easy", TaskClass::Knowledge),
    ("openbook_qa", TaskClass::Knowledge),
    ("mmlu", TaskClass::Knowledge),
    ("cmmlu", TaskClass::Knowledge),
    ("ceval", TaskClass::Knowledge),
    ("gpqa", TaskClass::Knowledge),
    ("natural_qa", TaskClass::FactualQa),
    ("trivia_qa", TaskClass::FactualQa),
    // CommonGen: "write a sentence using these concepts" — constrained writing.
    ("commongen", TaskClass::Writing),
];

/// The task class of a benchmark, or `None` for a benchmark outside the table.
pub fn task_of_benchmark(name: &str) -> Option<TaskClass> {
    let key = name.to_ascii_lowercase().replace('-', "_");
    let key = key
        .strip_suffix("_test")
        .or_else(|| key.strip_suffix("_train"))
        .unwrap_or(&key);
    BENCHMARKS
        .iter()
        .find(|(bench, _)| *bench == key)
        .map(|&(_, class)| class)
}

/// Signs that an instruction is about code.
const CODE_MARKERS: &[&str] = &[
    "```",
    "def ",
    "python",
    "javascript",
    "typescript",
    "c++",
    "c#",
    " sql",
    "regex",
    "html",
    "css",
    "bash",
    "powershell",
    "rust ",
    "golang",
    "a program",
    "code snippet",
    "function that",
    "a function to",
    "in code",
    "my code",
    "this code",
    "the code",
    "compile",
    "api ",
];

/// Verbs of transforming a given text; they mark a transform request when the prompt opens
/// with one, or when it works on "the given"/"the following" text.
const TRANSFORM_VERBS: &[&str] = &[
    "summarize",
    "summarise",
    "summary of",
    "translate",
    "rewrite",
    "paraphrase",
    "extract",
    "classify",
    "categorize",
    "categorise",
    "sentiment",
    "correct",
    "proofread",
    "edit ",
    "convert",
    "reformat",
    "simplify",
    "shorten",
    "rephrase",
    "fix the grammar",
    "tl;dr",
    "detect",
    "identify",
    "sort ",
    "tag ",
    "label ",
];

const GIVEN_TEXT: &[&str] = &[
    "the given",
    "the following",
    "this text",
    "this sentence",
    "this paragraph",
    "this passage",
    "this email",
    "this article",
    "this tweet",
    "this review",
];

/// Signs of a writing request: a made thing ...
const WRITING_THINGS: &[&str] = &[
    "story",
    "poem",
    "essay",
    "lyrics",
    "song",
    "haiku",
    "limerick",
    "sonnet",
    "letter",
    "speech",
    "toast",
    "blog post",
    "script",
    "dialogue",
    "slogan",
    "tagline",
    "joke",
];
/// ... asked for with a making verb, or role-play.
const WRITING_OPENERS: &[&str] = &[
    "write",
    "compose",
    "draft",
    "create",
    "tell me",
    "tell a",
    "make up",
    "come up with",
    "craft",
    "generate",
];
const ROLE_PLAY: &[&str] = &[
    "act as",
    "pretend",
    "roleplay",
    "role-play",
    "you are a",
    "imagine you",
];

/// A documented keyword rule for open-ended instructions (AlpacaEval) that have no task
/// label of their own, checked in this order: code markers → `code`; a transform verb that
/// opens the prompt, or one used on "the given/following" text → `transform`; role-play, or
/// a making verb in the first words with a written thing (story, poem, letter, ...) →
/// `writing`; everything else → `chat`. Noisy by nature: it is weak supervision for the
/// classes the benchmarks lack, alongside the hand-labelled seeds.
pub fn task_of_instruction(text: &str) -> TaskClass {
    let lower = text.trim_start().to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let opens = |words: &[&str]| words.iter().any(|w| lower.starts_with(w));
    let head: String = lower
        .split_whitespace()
        .take(8)
        .collect::<Vec<_>>()
        .join(" ");
    if has(CODE_MARKERS) {
        return TaskClass::Code;
    }
    if opens(TRANSFORM_VERBS) || (has(GIVEN_TEXT) && has(TRANSFORM_VERBS)) {
        return TaskClass::Transform;
    }
    let head_has = |words: &[&str]| words.iter().any(|w| head.contains(w));
    if has(ROLE_PLAY) || (head_has(WRITING_OPENERS) && head_has(WRITING_THINGS)) {
        return TaskClass::Writing;
    }
    TaskClass::Chat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_names_are_normalised() {
        assert_eq!(
            task_of_benchmark("arc-challenge"),
            Some(TaskClass::Knowledge)
        );
        assert_eq!(task_of_benchmark("mmlu_test"), Some(TaskClass::Knowledge));
        assert_eq!(task_of_benchmark("agentverse-mgsm"), Some(TaskClass::Math));
        assert_eq!(task_of_benchmark("MATH_prealgebra"), Some(TaskClass::Math));
        assert_eq!(task_of_benchmark("gsm8k-train"), Some(TaskClass::Math));
        assert_eq!(task_of_benchmark("unknown"), None);
    }

    #[test]
    fn instruction_rules() {
        assert_eq!(
            task_of_instruction("Write a poem about the sea"),
            TaskClass::Writing
        );
        assert_eq!(
            task_of_instruction("Summarize this: ..."),
            TaskClass::Transform
        );
        assert_eq!(
            task_of_instruction("How do I fix a python import error?"),
            TaskClass::Code
        );
        assert_eq!(
            task_of_instruction("What should I pack for a week in Rome?"),
            TaskClass::Chat
        );
    }
}
