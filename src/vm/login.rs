//! Logging in on a console: the usual `login:` / `Password:` dialogue.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::vm::console::{Console, Pattern};

/// How to log in on the DUT's console.
///
/// ```
/// use alpy::Login;
/// let rabbit = Login::new("root").password("rabbit").prompt("rabbit# ");
/// assert_eq!(rabbit.login_prompt, "login: ");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name typed at the login prompt.
    pub user: String,
    /// The password, if one is asked for.
    pub password: Option<String>,
    /// What the guest prints to ask for the user (`login: `).
    pub login_prompt: String,
    /// What the guest prints to ask for the password (`Password: `).
    pub password_prompt: String,
    /// The shell prompt after a successful login (`# `).
    pub shell_prompt: String,
    /// How long each step after the login prompt may take (the password
    /// prompt, the shell prompt) when [`crate::TestBed::boot`] logs in;
    /// `None`: the boot's timeout.
    pub step_timeout: Option<Duration>,
}

impl Login {
    /// Logs in as `user`, no password, shell prompt `# `.
    pub fn new(user: &str) -> Login {
        Login {
            user: user.to_string(),
            password: None,
            login_prompt: "login: ".into(),
            password_prompt: "Password: ".into(),
            shell_prompt: "# ".into(),
            step_timeout: None,
        }
    }

    /// Each step after the login prompt within `timeout` when
    /// [`crate::TestBed::boot`] logs in ("boot within 300 s, but once the
    /// login prompt is there, the shell must answer within 60 s").
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = alpy::Login::new("root").steps_within(Duration::from_secs(60));
    /// assert_eq!(l.step_timeout, Some(Duration::from_secs(60)));
    /// ```
    pub fn steps_within(mut self, timeout: Duration) -> Login {
        self.step_timeout = Some(timeout);
        self
    }

    /// The password to give.
    pub fn password(mut self, password: &str) -> Login {
        self.password = Some(password.to_string());
        self
    }

    /// The shell prompt that shows the login worked.
    pub fn prompt(mut self, prompt: &str) -> Login {
        self.shell_prompt = prompt.to_string();
        self
    }

    /// What the guest prints to ask for the user name.
    pub fn login_prompt(mut self, prompt: &str) -> Login {
        self.login_prompt = prompt.to_string();
        self
    }

    /// What the guest prints to ask for the password.
    pub fn password_prompt(mut self, prompt: &str) -> Login {
        self.password_prompt = prompt.to_string();
        self
    }

    /// Waits for the login prompt, types the user (and the password when
    /// asked), and waits for the shell prompt. A refused login is an error
    /// that says so, not a timeout.
    pub fn log_in(&self, console: &mut Console, timeout: Duration) -> Result<()> {
        console.expect(&Pattern::exact(&self.login_prompt), timeout)?;
        self.answer(console, timeout)
    }

    /// Like [`Login::log_in`] when the login prompt was already seen (for
    /// example by [`crate::TestBed::wait_prompt`]).
    pub fn answer(&self, console: &mut Console, timeout: Duration) -> Result<()> {
        console.send_line(&self.user)?;
        let shell = Pattern::exact(&self.shell_prompt);
        let password = Pattern::exact(&self.password_prompt);
        let refused = Pattern::regex(r"(?i)login incorrect|authentication fail|permission denied")?;
        let again = Pattern::exact(&self.login_prompt);
        loop {
            let (which, _) = console.exp_any(
                &[
                    shell.clone(),
                    password.clone(),
                    refused.clone(),
                    again.clone(),
                ],
                timeout,
            )?;
            match which {
                0 => return Ok(()),
                1 => match &self.password {
                    Some(p) => console.send_line(p)?,
                    None => {
                        return Err(Error::Config(format!(
                            "the console asks a password for {}, and none is configured (Login::password)",
                            self.user
                        )))
                    }
                },
                _ => {
                    return Err(Error::Config(format!(
                        "login as {} was refused on the console: check the user and password",
                        self.user
                    )))
                }
            }
        }
    }
}
