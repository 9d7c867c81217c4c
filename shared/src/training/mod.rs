//! Training: teaching Kotoba a tenant's website. `jobs` is the job record and the site lock;
//! `documents` the per-page records that make re-training differential; `pipeline` the worker's run
//! (crawl → extract → chunk → embed → versioned index), `checkpoint` a long job between invocations.

pub mod checkpoint;
pub mod documents;
pub mod jobs;
pub mod pipeline;
pub mod submit;
