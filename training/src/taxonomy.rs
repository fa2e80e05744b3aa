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

/// Words that open a transform instruction: the prompt hands over a text to work on.
const TRANSFORM_OPENERS: &[&str] = &[
    "summarize",
    "summarise",
    "translate",
    "rewrite",
    "paraphrase",
    "extract",
    "classify",
    "categorize",
    "categorise",
    "correct",
    "proofread",
    "edit",
    "convert",
    "reformat",
    "simplify",
    "shorten",
    "rephrase",
    "identify the",
    "fix the grammar",
    "sort",
    "tl;dr",
    "detect",
    "tag",
];

/// Words that open a writing request.
const WRITING_OPENERS: &[&str] = &[
    "write",
    "compose",
    "draft",
    "create a story",
    "create a poem",
    "generate a story",
    "pretend",
    "imagine",
    "act as",
    "roleplay",
    "role-play",
    "you are a",
    "tell me a story",
    "come up with a poem",
    "craft",
];

/// A documented keyword rule for open-ended instructions (AlpacaEval) that have no task
/// label of their own: the opening words decide between writing and transform, and
/// everything else is chat. Code-looking prompts are code.
pub fn task_of_instruction(text: &str) -> TaskClass {
    let lower = text.trim_start().to_ascii_lowercase();
    let code_markers = [
        "```",
        "def ",
        "function ",
        "python",
        "javascript",
        "sql ",
        "c++",
        "regex",
        "code",
    ];
    if code_markers.iter().any(|m| lower.contains(m)) {
        return TaskClass::Code;
    }
    if TRANSFORM_OPENERS.iter().any(|w| lower.starts_with(w)) {
        return TaskClass::Transform;
    }
    if WRITING_OPENERS.iter().any(|w| lower.starts_with(w)) {
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
