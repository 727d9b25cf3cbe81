//! The `openai` engine ([`engine`]) and its transport: an OpenAI-compatible chat-completions
//! client with concurrency, rate limits and retries ([`client`]), images as data URLs
//! ([`image`]), and a scripted server for its tests and benchmark ([`mock`]).

pub mod client;
pub mod engine;
pub mod image;
pub mod mock;
