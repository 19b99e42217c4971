"""The knowledge base over HTTP: documents, collections, search, re-embedding.

Routes only translate HTTP to ``services.knowledge`` and back; the org always comes from
the token.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema

from api.deps import ServicesDep
from api.knowledge_schemas import (
    COLLECTION_PATTERN,
    CollectionCreate,
    CollectionPublic,
    CollectionsPublic,
    DocumentError,
    DocumentPublic,
    DocumentsPublic,
    FileErrorPublic,
    ReembedRequest,
    RerankError,
    RerankPublic,
    SearchRequest,
    SearchResponse,
    SearchResult,
    UploadPublic,
)
from auth.deps import AdminPrincipal, CurrentPrincipal
from core.errors import ApiError, error_body
from core.request_id import current_request_id
from db.models import KnowledgeCollection, KnowledgeDocument
from services.knowledge import (
    CollectionOptions,
    SearchQuery,
    UploadedFile,
)

router = APIRouter(prefix="/knowledge", tags=["knowledge"])

DocumentId = Annotated[str, Path(min_length=1, max_length=64)]
FilePart = Annotated[
    UploadFile | str,
    WithJsonSchema({"type": "string", "contentMediaType": "application/octet-stream"}),
]
"""A multipart file; a part sent without a filename arrives as text and is refused with its
field's name (declared here so it is not a validation error naming ``UploadFile``)."""


def document_public(
    document: KnowledgeDocument, collection: str, *, duplicate: bool = False
) -> DocumentPublic:
    """The API view of a registry row."""
    error = (
        DocumentError(code=document.error_code, message=document.error_message or "")
        if document.error_code
        else None
    )
    return DocumentPublic(
        id=document.id,
        filename=document.filename,
        content_type=document.content_type,
        size_bytes=document.size_bytes,
        sha256=document.sha256,
        chunks=document.chunks,
        status=document.status,
        collection=collection,
        metadata=document.metadata_,
        created_by=document.created_by,
        created_at=document.created_at,
        updated_at=document.updated_at,
        error=error,
        duplicate=duplicate,
    )


def collection_public(collection: KnowledgeCollection) -> CollectionPublic:
    """The API view of a collection."""
    return CollectionPublic(
        name=collection.name,
        embedding_model=collection.embedding_model,
        embedding_dim=collection.embedding_dim,
        distance=collection.distance,
        chunk_size=collection.chunk_size,
        chunk_overlap=collection.chunk_overlap,
        reembedding_to=collection.building_model,
        created_at=collection.created_at,
    )


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    """At most ``limit + 1`` bytes: enough to tell that a file is too large."""
    data = await upload.read(limit + 1)
    await upload.close()
    return data


def _parse_json_object(raw: str | None, field: str) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"{field} must be a JSON object") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_request", f"{field} must be a JSON object")
    return value


@router.post(
    "/documents",
    response_model=UploadPublic,
    status_code=201,
    operation_id="knowledge-upload",
    responses={413: {}, 415: {}, 422: {}},
)
async def upload_documents(
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
    files: Annotated[list[FilePart] | None, File(description="One or many files.")] = None,
    file: Annotated[FilePart | None, File(description="A single file.")] = None,
    metadata: Annotated[str | None, Form(description="JSON object kept with every chunk.")] = None,
    collection: Annotated[str, Form(pattern=COLLECTION_PATTERN)] = "default",
) -> Any:
    """Upload documents (multipart field ``files``, or ``file``): parsed, chunked, embedded.

    Small files are ingested before the answer (``status: ready``); large ones in the
    background (``status: processing``; poll ``GET /api/knowledge/documents/{id}``).
    """
    if "collection" in (form := await request.form()) and not form["collection"]:
        # A form's empty field would otherwise read as absent: the default collection.
        raise ApiError(422, "invalid_request", "collection: must not be empty")
    parts = [*(("files", f) for f in files or []), *([("file", file)] if file is not None else [])]
    for field, part in parts:
        if isinstance(part, str):
            raise ApiError(422, "invalid_request", f"{field}: a file part needs a filename")
    uploads = [part for _, part in parts if not isinstance(part, str)]
    if not uploads:
        raise ApiError(422, "no_files", "send the files in the multipart field 'files'")
    limit = services.settings.knowledge_max_file_bytes
    received = [
        UploadedFile(
            filename=upload.filename or "upload",
            content_type=upload.content_type,
            data=await _read_limited(upload, limit),
        )
        for upload in uploads
    ]
    result = await services.knowledge.upload(
        principal,
        received,
        metadata=_parse_json_object(metadata, "metadata"),
        collection_name=collection,
        request_id=current_request_id(),
    )
    body = UploadPublic(
        documents=[
            document_public(document, collection, duplicate=duplicate)
            for document, duplicate in result.documents
        ],
        errors=[
            FileErrorPublic(filename=e.filename, code=e.code, message=e.message, status=e.status)
            for e in result.errors
        ],
    )
    if not result.documents and result.errors:
        first = result.errors[0]
        payload = {**error_body(first.code, first.message, first.status), **body.model_dump()}
        return JSONResponse(payload, status_code=first.status)
    return body


@router.get("/documents", response_model=DocumentsPublic, operation_id="knowledge-list")
async def list_documents(
    principal: CurrentPrincipal,
    services: ServicesDep,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN)] = None,
    status: Annotated[str | None, Query(pattern="^(processing|ready|failed|cancelled)$")] = None,
    metadata: Annotated[
        str | None, Query(description='JSON object of equalities, e.g. {"team": "hr"}')
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DocumentsPublic:
    """The org's documents, newest first."""
    rows, count = await services.knowledge.list_documents(
        principal,
        collection=collection,
        status=status,
        metadata=_parse_json_object(metadata, "metadata"),
        limit=limit,
        offset=offset,
    )
    names = await services.knowledge.collection_names(principal.org_id)
    return DocumentsPublic(
        data=[document_public(d, names.get(d.collection_id, "?")) for d in rows], count=count
    )


async def _public_of(services: Any, document: KnowledgeDocument) -> DocumentPublic:
    names = await services.knowledge.collection_names(document.org_id)
    return document_public(document, names.get(document.collection_id, "?"))


@router.get("/documents/{document_id}", response_model=DocumentPublic, operation_id="knowledge-get")
async def get_document(
    document_id: DocumentId, principal: CurrentPrincipal, services: ServicesDep
) -> DocumentPublic:
    """A document and its ingestion status."""
    return await _public_of(services, await services.knowledge.get(principal, document_id))


@router.delete("/documents/{document_id}", status_code=204, operation_id="knowledge-delete")
async def delete_document(
    document_id: DocumentId, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Delete a document and its chunks (its uploader or an admin)."""
    document = await services.knowledge.get(principal, document_id)
    if document.created_by != principal.user_id and not principal.is_admin:
        raise ApiError(403, "forbidden", "only the uploader or an admin may delete a document")
    await services.knowledge.delete(principal, document_id)
    return Response(status_code=204)


@router.post(
    "/documents/{document_id}/reindex",
    response_model=DocumentPublic,
    status_code=202,
    operation_id="knowledge-reindex",
)
async def reindex_document(
    document_id: DocumentId, principal: CurrentPrincipal, services: ServicesDep
) -> DocumentPublic:
    """Parse, chunk and embed the stored file again (e.g. after changing chunking)."""
    document = await services.knowledge.reindex(principal, document_id, current_request_id())
    return await _public_of(services, document)


@router.post(
    "/documents/{document_id}/cancel",
    response_model=DocumentPublic,
    operation_id="knowledge-cancel",
)
async def cancel_document(
    document_id: DocumentId, principal: CurrentPrincipal, services: ServicesDep
) -> DocumentPublic:
    """Stop a document that is still processing (``status: cancelled``)."""
    return await _public_of(services, await services.knowledge.cancel(principal, document_id))


@router.get("/collections", response_model=CollectionsPublic, operation_id="knowledge-collections")
async def list_collections(principal: CurrentPrincipal, services: ServicesDep) -> CollectionsPublic:
    """The org's collections with their embedding model and dimension."""
    rows = await services.knowledge.collections(principal)
    return CollectionsPublic(data=[collection_public(c) for c in rows])


@router.post(
    "/collections",
    response_model=CollectionPublic,
    status_code=201,
    operation_id="knowledge-collection-create",
)
async def create_collection(
    body: CollectionCreate, principal: CurrentPrincipal, services: ServicesDep
) -> CollectionPublic:
    """Create a collection with its own embedding model, distance and chunking."""
    collection = await services.knowledge.create_collection(
        principal,
        body.name,
        CollectionOptions(
            embedding_model=body.embedding_model,
            distance=body.distance,
            chunk_size=body.chunk_size,
            chunk_overlap=body.chunk_overlap,
        ),
    )
    return collection_public(collection)


@router.post("/search", response_model=SearchResponse, operation_id="knowledge-search")
async def search(
    body: SearchRequest, principal: CurrentPrincipal, services: ServicesDep
) -> SearchResponse:
    """Find the chunks that answer a query (vector, keyword or hybrid)."""
    found = await services.knowledge.find(
        services.knowledge.context(principal, "knowledge.search", current_request_id()),
        SearchQuery(
            query=body.query,
            k=body.k,
            filter=body.filter,
            collection=body.collection,
            mmr=body.mmr,
            mode=body.mode,
            rerank=body.rerank,
        ),
    )
    rerank = found.rerank
    return SearchResponse(
        results=[
            SearchResult(
                document_id=h.document_id,
                chunk_id=h.chunk_id,
                text=h.text,
                score=h.score,
                vector_score=h.vector_score,
                keyword_score=h.keyword_score,
                rerank_score=h.rerank_score,
                metadata=h.metadata,
            )
            for h in found.hits
        ],
        collection=body.collection,
        mode=body.mode,
        rerank=None
        if rerank is None
        else RerankPublic(
            model=rerank.model,
            applied=rerank.applied,
            error=RerankError(code=rerank.error, message=rerank.message or "")
            if rerank.error
            else None,
        ),
    )


@router.post(
    "/reembed", response_model=CollectionPublic, status_code=202, operation_id="knowledge-reembed"
)
async def reembed(
    body: ReembedRequest, principal: AdminPrincipal, services: ServicesDep
) -> CollectionPublic:
    """Rebuild a collection's vectors with another model, without downtime (admins)."""
    collection = await services.knowledge.reembed(
        principal, body.collection, body.embedding_model, current_request_id()
    )
    return collection_public(collection)
