#[multipool::main]
fn main() {}
