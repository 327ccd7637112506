// `tokio` needs the `multipool-compat` crate, which this crate lacks.
#[multipool::main(workers = 1, tokio)]
async fn main() {}
