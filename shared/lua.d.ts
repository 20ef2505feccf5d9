// Lua scripts are imported as text (Bun text imports), so compiled binaries embed them.
declare module "*.lua" {
  const source: string;
  export default source;
}
