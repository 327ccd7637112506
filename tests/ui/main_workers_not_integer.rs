#[multipool::main(workers = "two")]
async fn main() {}
