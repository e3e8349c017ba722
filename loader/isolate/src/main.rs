fn main() {
    berth_isolate::worker_main()
}
