//! Generic parameters with bounds and a `where` clause, lifetimes, `impl Trait` arguments,
//! and an `impl Trait` inside the return type. The policy `static` never names the
//! function's generics, so it is valid here.

#[path = "../support/mod.rs"]
mod support;

use std::fmt::Display;

use resilient::resilient;
use support::RepoResult;

#[resilient(retry = 2)]
pub async fn bounded<K: Display + Clone, V>(key: K, value: &V) -> RepoResult<String>
where
    V: Display + ?Sized,
{
    Ok(format!("{key}={value}"))
}

#[resilient(retry = 1)]
pub async fn borrowed<'a, 'b: 'a>(name: &'a str, other: &'b str) -> RepoResult<&'a str> {
    Ok(if name.is_empty() { other } else { name })
}

#[resilient(retry = 1)]
pub async fn impl_args(name: impl AsRef<str> + Clone, tags: &[impl Display]) -> RepoResult<usize> {
    Ok(name.as_ref().len() + tags.len())
}

/// Without retries, arguments are not cloned: a non-`Clone` `impl Trait` is fine.
#[resilient]
pub async fn impl_once(name: impl AsRef<str>) -> RepoResult<usize> {
    Ok(name.as_ref().len())
}

#[resilient(retry = 1)]
pub async fn impl_return(n: u32) -> RepoResult<impl Display> {
    Ok(n * 2)
}

pub struct Cache<T>(T);

impl<T: Clone + Send + Sync> Cache<T> {
    #[resilient(retry = 1)]
    pub async fn get(&self) -> RepoResult<T> {
        Ok(self.0.clone())
    }

    #[resilient(retry = 1)]
    pub async fn replace<U: Into<T> + Clone>(&mut self, value: U) -> RepoResult<()> {
        self.0 = value.into();
        Ok(())
    }
}

fn main() {
    support::run(async {
        assert_eq!(bounded(1, "x").await.unwrap(), "1=x");
        assert_eq!(borrowed("", "b").await.unwrap(), "b");
        assert_eq!(impl_args("abc", &[1, 2]).await.unwrap(), 5);
        assert_eq!(impl_once(String::from("ab")).await.unwrap(), 2);
        assert_eq!(impl_return(2).await.unwrap().to_string(), "4");
        let mut cache = Cache(String::from("a"));
        cache.replace("b").await.unwrap();
        assert_eq!(cache.get().await.unwrap(), "b");
    });
}
