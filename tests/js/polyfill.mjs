// matrix-js-sdk 43 targets Node 22 and calls Promise.withResolvers (Node 22+).
// This runs before the SDK is imported (it is the test's first import) and
// adds it on Node 20 only when missing.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}
