#!/bin/bash
# session 10 measurements: run from /work/main, nothing else running
export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64
M=<dir>/s110-16k-mha.gguf
L=<llama.cpp c392e50, GGML_NATIVE>/bin
out=/tmp/s10
cd /work/main
date -u > $out/when.txt; git log --oneline -1 >> $out/when.txt; uptime >> $out/when.txt
$L/llama-bench -m $M -p 0 -n 64 -r 5 -t 2 > $out/llama-bench-tg64.txt 2>&1
./kvslim bench speed -m $M --prompt 0 --gen 64 --depths 0 --repeat 5 -t 2 > $out/kvslim-tg64-after.txt 2>&1
<build at 1591a0e>/kvslim bench speed -m $M --prompt 0 --gen 64 --depths 0 --repeat 5 -t 2 > $out/kvslim-tg64-before.txt 2>&1
$L/llama-bench -m $M -p 512 -n 0 -r 3 -t 2 > $out/llama-bench-pp512.txt 2>&1
./kvslim bench speed -m $M --prompt 512 --gen 0 --repeat 3 -t 2 > $out/kvslim-pp512-after.txt 2>&1
./kvslim bench speed -m $M --prompt 0 --gen 32 --depths 8192 --repeat 3 -t 2 --kv full --kv f16 --kv kivi:kbits=2,vbits=2 --kv 'snapkv:budget=25%,window=32 + f16' > $out/kvslim-d8192-after.txt 2>&1
<build at 1591a0e>/kvslim bench speed -m $M --prompt 0 --gen 32 --depths 8192 --repeat 3 -t 2 --kv full --kv kivi:kbits=2,vbits=2 --kv 'snapkv:budget=25%,window=32 + f16' > $out/kvslim-d8192-before.txt 2>&1
$L/llama-batched-bench -m $M -c 8400 -b 2048 -ub 512 -npp 8192 -ntg 32 -npl 1 -t 2 -ctk f16 -ctv f16 > $out/llama-batched-bench-f16-8192.txt 2>&1
date -u >> $out/when.txt; uptime >> $out/when.txt
