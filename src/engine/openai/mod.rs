//! The `openai` adapter's transport: an OpenAI-compatible chat-completions client with
//! concurrency, rate limits and retries ([`client`]), and a scripted server for its tests and
//! benchmark ([`mock`]). The adapter itself (prompts, images as data URLs, outputs as tags or
//! captions, runs) builds on these.

pub mod client;
pub mod image;
pub mod mock;
