#[multipool::main(crate = "not_there::mp")]
async fn main() {
    let _ = 1;
}
