//! Completing the server core's [`Job`]s: argon2id hashing and checking of passwords, and
//! durable writes through a [`Journal`].
//!
//! This is the slow work the core hands out rather than does. The tokio driver runs it on
//! blocking threads; the harness and the simulator run it inline, in virtual time
//! ([`crate::harness::settle`]).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::server::{Job, JobResult, Journal};

/// Hashes `password` with argon2id at `cost` (memory KiB, iterations, lanes) and `salt`;
/// the PHC string, or `None` if the parameters are invalid.
pub fn hash_password(password: &str, salt: &[u8; 16], cost: (u32, u32, u32)) -> Option<String> {
    let (m, t, p) = cost;
    let params = argon2::Params::new(m, t, p, None).ok()?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(salt).ok()?;
    a.hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// Whether `password` matches the PHC string `hash` (the costs are read from it).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

impl Job {
    /// Does a password job (hash or check) where the caller is; `None` for a
    /// [`Job::Write`], which needs a journal ([`Job::run`]).
    pub fn compute(&self) -> Option<JobResult> {
        match self {
            Job::HashPassword {
                password,
                salt,
                cost,
            } => Some(JobResult::Hashed(hash_password(password, salt, *cost))),
            Job::VerifyPassword { hash, password } => {
                Some(JobResult::Verified(verify_password(hash, password)))
            }
            Job::Write(_) => None,
        }
    }

    /// Does the job where the caller is, writing through `journal`.
    pub fn run(&self, journal: &mut dyn Journal) -> JobResult {
        match self {
            Job::Write(change) => JobResult::Written(journal.write(change)),
            other => other.compute().unwrap_or(JobResult::Verified(false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Account, Level, Persist, Volatile};

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let h = hash_password("secret", &[7; 16], (8, 1, 1)).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "secret"));
        assert!(!verify_password(&h, "Secret"));
        assert!(!verify_password("$argon2id$bogus", "secret"));
        // Invalid costs give no hash rather than a panic.
        assert_eq!(hash_password("x", &[0; 16], (0, 0, 0)), None);
    }

    #[test]
    fn jobs_run_inline_give_the_result_of_their_kind() {
        let job = Job::HashPassword {
            password: "pw".into(),
            salt: [1; 16],
            cost: (8, 1, 1),
        };
        let Some(JobResult::Hashed(Some(h))) = job.compute() else {
            panic!("no hash");
        };
        let check = Job::VerifyPassword {
            hash: h,
            password: "pw".into(),
        };
        assert_eq!(check.run(&mut Volatile), JobResult::Verified(true));
        let write = Job::Write(Persist::AccountCreated(Account {
            nick: "a".into(),
            password_hash: String::new(),
            email: String::new(),
            level: Level::User,
        }));
        assert_eq!(write.compute(), None);
        assert_eq!(write.run(&mut Volatile), JobResult::Written(Ok(())));
        // A job's debug text never shows the password.
        assert!(!format!("{check:?}").contains("pw"));
    }
}
