//! Why scoring stopped. Every message names the reward, and a command's its command line
//! and the batch lines at fault, so a run that fails at step 300 says which script to fix
//! and on what input. Nothing is ever scored 0 in place of an error.

#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// The reward cannot be built: a bad regex, a missing program, a judge without its key.
    #[error("reward `{reward}`: {message}")]
    Setup { reward: String, message: String },
    /// A completion's record gives the answer reward nothing to compare with.
    #[error("reward `{reward}`: line {line} of the batch: {message}")]
    Reference {
        reward: String,
        /// 1-based index of the completion in the batch.
        line: usize,
        message: String,
    },
    /// A command failed, ran too long, or did not write one finite number per input line.
    #[error("reward `{reward}`: command `{command}`: {message}")]
    Command {
        reward: String,
        command: String,
        message: String,
    },
    /// A command could not be started (or waited for).
    #[error("reward `{reward}`: command `{command}`: {what}: {source}")]
    Process {
        reward: String,
        command: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A judge request failed for good (after the client's retries) or was refused.
    #[error("reward `{reward}`: judge {judge}: line {line} of the batch: {message}")]
    Judge {
        reward: String,
        /// `provider model at url`.
        judge: String,
        line: usize,
        message: String,
    },
}
