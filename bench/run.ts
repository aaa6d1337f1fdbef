// Benchmarks entry point (filled in by the benchmark suite).
console.log('no benchmarks yet');
