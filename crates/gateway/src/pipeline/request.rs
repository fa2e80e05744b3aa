//! The chat request as the gateway reads it: the fields it needs, checked with errors that
//! name the field; everything else passes through to the upstream untouched.

use serde::Deserialize;

use crate::error::ApiError;

/// The fields of a chat request the gateway reads; the rest passes through untouched.
#[derive(Debug, Deserialize)]
pub struct ChatView {
    pub model: String,
    pub messages: Vec<MessageView>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub n: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct MessageView {
    pub role: String,
    #[serde(default)]
    pub content: Option<ContentView>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ContentView {
    Text(String),
    Parts(Vec<PartView>),
}

#[derive(Debug, Deserialize)]
pub struct PartView {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl MessageView {
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(ContentView::Text(s)) => s.clone(),
            Some(ContentView::Parts(parts)) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

impl ChatView {
    /// Parses and checks the request, naming the offending field.
    pub fn parse(body: &serde_json::Value) -> Result<Self, ApiError> {
        if !body.is_object() {
            return Err(ApiError::invalid("the request body must be a JSON object"));
        }
        let view: Self =
            crate::error::parse_body(body, "must be a string or an array of content parts")?;
        if view.messages.is_empty() {
            return Err(
                ApiError::invalid("messages: must contain at least one message").param("messages"),
            );
        }
        for (i, m) in view.messages.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::invalid(format!(
                    "messages[{i}].role: {:?} is not one of {}",
                    m.role,
                    ROLES.join(", ")
                ))
                .param(format!("messages[{i}].role")));
            }
        }
        if let Some(t) = view.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(
                ApiError::invalid("temperature: must be between 0 and 2").param("temperature")
            );
        }
        if let Some(p) = view.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::invalid("top_p: must be in (0, 1]").param("top_p"));
        }
        if view.n.is_some_and(|n| n == 0) {
            return Err(ApiError::invalid("n: must be at least 1").param("n"));
        }
        if view.max_tokens.or(view.max_completion_tokens) == Some(0) {
            return Err(ApiError::invalid("max_tokens: must be at least 1").param("max_tokens"));
        }
        Ok(view)
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn wants_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// What the router embeds: the last user message's text (else the last message's).
    pub fn prompt(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .or(self.messages.last())
            .map(MessageView::text)
            .unwrap_or_default()
    }

    /// Estimated prompt tokens of the whole chat, for cost and context windows (the
    /// router's length feature is the estimate of [`Self::prompt`] alone).
    pub fn input_tokens(&self) -> u64 {
        let texts: Vec<String> = self.messages.iter().map(MessageView::text).collect();
        switchyard_core::tokens::estimate_messages(texts.iter().map(String::as_str))
    }

    /// The client's output cap.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}
