fn main() {
    println!("wafer");
}
