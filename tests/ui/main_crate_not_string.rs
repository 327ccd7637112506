#[multipool::main(crate = 42)]
async fn main() {}
