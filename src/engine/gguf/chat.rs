//! A GGUF model's chat template (`tokenizer.chat_template`), rendered with minijinja.
//!
//! Hugging Face renders these templates with Jinja2 (`trim_blocks`, `lstrip_blocks`) and the
//! context `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and a
//! `raise_exception` function; this does the same, plus the few Python string and dict methods
//! common templates call (`strip`, `startswith`, `items`, ...). A model without a template gets
//! ChatML.

use anyhow::{Context as _, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{from_args, Value, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, State};

/// ChatML, for models that carry no template.
pub(super) const CHATML: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}\
{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const NAME: &str = "chat_template";

/// A compiled chat template.
pub(super) struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source` (ChatML when `None`).
    pub(super) fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .context("chat template syntax")?;
        env.set_syntax(syntax);
        env.add_function("raise_exception", raise_exception);
        env.set_unknown_method_callback(python_method);
        env.add_template_owned(NAME, source.unwrap_or(CHATML).to_string())
            .context("the chat template does not compile")?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The prompt for `messages` ((role, content) pairs), ending where the assistant's answer
    /// begins.
    pub(super) fn render(&self, messages: &[(String, String)]) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| context! { role => role, content => content })
            .collect();
        self.env
            .get_template(NAME)
            .and_then(|t| {
                t.render(context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => &self.bos_token,
                    eos_token => &self.eos_token,
                })
            })
            .context("cannot render the chat template")
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// The Python methods chat templates call most, on strings and dicts.
fn python_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        return string_method(s, method, args);
    }
    if value.kind() == ValueKind::Map {
        return match method {
            "items" => {
                let () = from_args(args)?;
                state.apply_filter("items", std::slice::from_ref(value))
            }
            "keys" => {
                let () = from_args(args)?;
                Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
            }
            "values" => {
                let () = from_args(args)?;
                let keys = value.try_iter()?;
                Ok(Value::from(
                    keys.map(|k| value.get_item(&k))
                        .collect::<Result<Vec<_>, _>>()?,
                ))
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() {
                    default.unwrap_or(Value::from(()))
                } else {
                    v
                })
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        };
    }
    Err(Error::from(ErrorKind::UnknownMethod))
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    let strip = |args: &[Value]| -> Result<Vec<char>, Error> {
        let (chars,): (Option<String>,) = from_args(args)?;
        Ok(chars.map(|c| c.chars().collect()).unwrap_or_default())
    };
    let is_strip = |chars: &[char]| {
        let chars = chars.to_vec();
        move |c: char| {
            if chars.is_empty() {
                c.is_whitespace()
            } else {
                chars.contains(&c)
            }
        }
    };
    Ok(match method {
        "strip" => Value::from(s.trim_matches(is_strip(&strip(args)?))),
        "lstrip" => Value::from(s.trim_start_matches(is_strip(&strip(args)?))),
        "rstrip" => Value::from(s.trim_end_matches(is_strip(&strip(args)?))),
        "startswith" => {
            let (prefix,): (String,) = from_args(args)?;
            Value::from(s.starts_with(&prefix))
        }
        "endswith" => {
            let (suffix,): (String,) = from_args(args)?;
            Value::from(s.ends_with(&suffix))
        }
        "upper" => Value::from(s.to_uppercase()),
        "lower" => Value::from(s.to_lowercase()),
        "replace" => {
            let (old, new): (String, String) = from_args(args)?;
            Value::from(s.replace(&old, &new))
        }
        "split" => {
            let (sep,): (Option<String>,) = from_args(args)?;
            let parts: Vec<String> = match &sep {
                Some(sep) => s.split(sep.as_str()).map(str::to_string).collect(),
                None => s.split_whitespace().map(str::to_string).collect(),
            };
            Value::from(parts)
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn chatml_by_default() {
        let t = ChatTemplate::new(None, "", "").unwrap();
        let out = t
            .render(&msgs(&[("system", "Be brief."), ("user", "Hi")]))
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_trim_blocks_and_tokens() {
        let src = "{{ bos_token }}{% for m in messages %}\n  {% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}\n[{{ m.role.upper() }}]{{ m['content'].strip() }}{% if m.content.startswith(' ') %}!{% endif %}\n{% endfor %}{{ eos_token }}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&msgs(&[("user", " hello  ")])).unwrap(),
            "<s>[USER]hello!</s>"
        );
        let err = t.render(&msgs(&[("system", "x")])).unwrap_err();
        assert!(format!("{err:#}").contains("no system"), "{err:#}");
    }

    #[test]
    fn a_broken_template_is_an_error() {
        assert!(ChatTemplate::new(Some("{% for %}"), "", "").is_err());
    }
}
