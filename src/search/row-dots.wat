;; The dot products of QuantizedRows' rows with a few unit vectors, in WebAssembly SIMD (128-bit).
;; Source of src/search/row-dots-wasm.ts: `node --import tsx scripts/build-wasm.ts` compiles it (wabt) into that file.
;;
;; Linear memory holds, at offsets the caller chooses (src/search/row-dots.ts):
;;   vectors  m x dims float32, the vectors compared with every row
;;   coarse   n x dims int8, each row's coarse layer; fine: the same, its fine layer
;;   steps    n pairs of float32, each row's coarse and fine step (1 / its scale, 0 for an empty layer)
;;   scratch  dims float32, where each row is rebuilt
;;   out      n x m float32: out[i * m + j] = (coarse[i] * steps[i].coarse + fine[i] * steps[i].fine) . vectors[j]
(module
  (memory (export "memory") 1)

  (func (export "dots")
    (param $vectors i32) (param $m i32) (param $coarse i32) (param $fine i32) (param $steps i32)
    (param $n i32) (param $dims i32) (param $scratch i32) (param $out i32)
    (local $i i32) (local $j i32) (local $d i32) (local $wide i32) (local $rowBytes i32)
    (local $rowCoarse i32) (local $rowFine i32) (local $vector i32) (local $at i32)
    (local $c v128) (local $f v128) (local $coarseStep v128) (local $fineStep v128)
    (local $sum0 v128) (local $sum1 v128) (local $sum f32)
    ;; The dimensions handled 16 at a time; the rest one at a time.
    (local.set $wide (i32.and (local.get $dims) (i32.const -16)))
    (local.set $rowBytes (i32.shl (local.get $dims) (i32.const 2)))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $rowCoarse (i32.add (local.get $coarse) (i32.mul (local.get $i) (local.get $dims))))
        (local.set $rowFine (i32.add (local.get $fine) (i32.mul (local.get $i) (local.get $dims))))
        (local.set $at (i32.add (local.get $steps) (i32.shl (local.get $i) (i32.const 3))))
        (local.set $coarseStep (f32x4.splat (f32.load (local.get $at))))
        (local.set $fineStep (f32x4.splat (f32.load offset=4 (local.get $at))))

        ;; The row rebuilt into scratch: coarse * its step + fine * its step, 16 dimensions a turn.
        (local.set $d (i32.const 0))
        (block $rebuilt
          (loop $rebuild
            (br_if $rebuilt (i32.ge_u (local.get $d) (local.get $wide)))
            (local.set $c (v128.load (i32.add (local.get $rowCoarse) (local.get $d))))
            (local.set $f (v128.load (i32.add (local.get $rowFine) (local.get $d))))
            (local.set $at (i32.add (local.get $scratch) (i32.shl (local.get $d) (i32.const 2))))
            (v128.store (local.get $at)
              (f32x4.add
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (i16x8.extend_low_i8x16_s (local.get $c)))) (local.get $coarseStep))
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (i16x8.extend_low_i8x16_s (local.get $f)))) (local.get $fineStep))))
            (v128.store offset=16 (local.get $at)
              (f32x4.add
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (i16x8.extend_low_i8x16_s (local.get $c)))) (local.get $coarseStep))
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (i16x8.extend_low_i8x16_s (local.get $f)))) (local.get $fineStep))))
            (v128.store offset=32 (local.get $at)
              (f32x4.add
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (i16x8.extend_high_i8x16_s (local.get $c)))) (local.get $coarseStep))
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (i16x8.extend_high_i8x16_s (local.get $f)))) (local.get $fineStep))))
            (v128.store offset=48 (local.get $at)
              (f32x4.add
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (i16x8.extend_high_i8x16_s (local.get $c)))) (local.get $coarseStep))
                (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (i16x8.extend_high_i8x16_s (local.get $f)))) (local.get $fineStep))))
            (local.set $d (i32.add (local.get $d) (i32.const 16)))
            (br $rebuild)))
        (block $rebuiltTail
          (loop $rebuildTail
            (br_if $rebuiltTail (i32.ge_u (local.get $d) (local.get $dims)))
            (f32.store (i32.add (local.get $scratch) (i32.shl (local.get $d) (i32.const 2)))
              (f32.add
                (f32.mul (f32.convert_i32_s (i32.load8_s (i32.add (local.get $rowCoarse) (local.get $d)))) (f32x4.extract_lane 0 (local.get $coarseStep)))
                (f32.mul (f32.convert_i32_s (i32.load8_s (i32.add (local.get $rowFine) (local.get $d)))) (f32x4.extract_lane 0 (local.get $fineStep)))))
            (local.set $d (i32.add (local.get $d) (i32.const 1)))
            (br $rebuildTail)))

        ;; Its dot product with each vector, in two running sums of four.
        (local.set $j (i32.const 0))
        (block $vectorsDone
          (loop $eachVector
            (br_if $vectorsDone (i32.ge_u (local.get $j) (local.get $m)))
            (local.set $vector (i32.add (local.get $vectors) (i32.mul (local.get $j) (local.get $rowBytes))))
            (local.set $sum0 (v128.const f32x4 0 0 0 0))
            (local.set $sum1 (v128.const f32x4 0 0 0 0))
            (local.set $d (i32.const 0))
            (block $dotted
              (loop $dot
                (br_if $dotted (i32.ge_u (local.get $d) (local.get $wide)))
                (local.set $at (i32.shl (local.get $d) (i32.const 2)))
                (local.set $sum0 (f32x4.add (local.get $sum0)
                  (f32x4.mul (v128.load (i32.add (local.get $scratch) (local.get $at))) (v128.load (i32.add (local.get $vector) (local.get $at))))))
                (local.set $sum1 (f32x4.add (local.get $sum1)
                  (f32x4.mul (v128.load offset=16 (i32.add (local.get $scratch) (local.get $at))) (v128.load offset=16 (i32.add (local.get $vector) (local.get $at))))))
                (local.set $d (i32.add (local.get $d) (i32.const 8)))
                (br $dot)))
            (local.set $sum0 (f32x4.add (local.get $sum0) (local.get $sum1)))
            (local.set $sum
              (f32.add
                (f32.add (f32x4.extract_lane 0 (local.get $sum0)) (f32x4.extract_lane 1 (local.get $sum0)))
                (f32.add (f32x4.extract_lane 2 (local.get $sum0)) (f32x4.extract_lane 3 (local.get $sum0)))))
            (block $dottedTail
              (loop $dotTail
                (br_if $dottedTail (i32.ge_u (local.get $d) (local.get $dims)))
                (local.set $at (i32.shl (local.get $d) (i32.const 2)))
                (local.set $sum (f32.add (local.get $sum)
                  (f32.mul (f32.load (i32.add (local.get $scratch) (local.get $at))) (f32.load (i32.add (local.get $vector) (local.get $at))))))
                (local.set $d (i32.add (local.get $d) (i32.const 1)))
                (br $dotTail)))
            (f32.store
              (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $m)) (local.get $j)) (i32.const 2)))
              (local.get $sum))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $eachVector)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows)))))
