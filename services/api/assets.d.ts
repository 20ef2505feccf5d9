// Static assets the api serves are imported as text (Bun text imports), so compiled binaries embed them.
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const text: string;
  export default text;
}
